"""Configuration of a HUT adapter, in peft's dataclass convention."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from peft.config import PeftConfig

from .peft_type import HUT_PEFT_TYPE

InitKind = Literal["identity", "perturbed"]


@dataclass
class HUTConfig(PeftConfig):
    """Configuration of HUT (Hadamard Updated Transformation, https://arxiv.org/abs/2409.13501).

    A frozen dense layer ``h = x W0 + b0`` becomes ``h = γ ⊙ (x · diag(m_A) W0 diag(m_B) + b0) + β`` with
    ``m_A = mean_j M_A[:, j]`` and ``m_B = mean_i M_B[i, :]`` (eq. 8–9; the base bias stays inside the scale).

    Args:
        r: Rank of ``M_A (d×r)`` and ``M_B (r×k)``. Only the means reach the forward, so from the identity init
            every r trains like r = 1 under Adam/AdamW, while under SGD the means learn r times slower
            (docs/method.md); r is kept for the paper's parameter counts.
        target_modules: Module names (suffix match) or a regex, as in every peft method. ``None`` picks the
            attention query and value projections for known architectures.
        exclude_modules: Names or a regex of modules to leave alone.
        fan_in_fan_out: True for layers that store their weight as (in, out), like GPT-2's ``Conv1D``. Set
            automatically per layer; it only affects merging.
        shift: Train the shift ``β``. A layer without a bias (Llama attention) can merge β only if it is zero,
            so ``shift=False`` is the setting for merging into bias-free architectures.
        init: ``"identity"`` (M_A = M_B = 1, γ = 1, β = 0: the adapted model equals the base exactly) or
            ``"perturbed"`` (identity plus N(0, init_std) noise; for tests and symmetry-breaking studies).
        init_std: Standard deviation of the perturbed init.
        fused_slices: For fused projections, module-name suffix → which equal output blocks to adapt, e.g.
            ``{"c_attn": [True, False, True]}`` adapts the q and v blocks of GPT-2's fused q/k/v projection
            (as the paper and LoRA do) and leaves k frozen. Each adapted block gets its own ``M_A``, ``M_B``,
            ``γ`` and ``β`` (parameters gain a leading block dimension). Such layers read ``W0`` directly, so
            they need an unquantised base.
        recompute_base_output: Do not keep the base layer's output ``y = base(x ⊙ m_A)`` (N × k per adapted
            matrix) for the backward; recompute it there from the input, which the backward keeps anyway. Trades
            one extra forward matmul per adapted matrix for training memory at or below LoRA's
            (docs/performance.md has both costs). Training only: inference and merges are unchanged.
        modules_to_save: Extra modules trained in full and saved (classification heads, for example).
        layers_to_transform: Layer indices to adapt (all when None).
        layers_pattern: Name of the layer list, used with ``layers_to_transform``.

    Raises:
        ValueError: r < 1, an unknown init, or a negative init_std.
    """

    r: int = field(default=8, metadata={"help": "Rank of M_A (d×r) and M_B (r×k); must be >= 1."})
    target_modules: Optional[Union[list[str], str]] = field(
        default=None,
        metadata={"help": "Module names (suffix match) or a regex to adapt; None picks q and v for known models."},
    )
    exclude_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Module names or a regex to leave unadapted."}
    )
    fan_in_fan_out: bool = field(
        default=False, metadata={"help": "Weights stored as (in, out), e.g. GPT-2 Conv1D; set per layer."}
    )
    shift: bool = field(default=True, metadata={"help": "Train the shift β (needs a base bias to merge)."})
    init: InitKind = field(default="identity", metadata={"help": "'identity' (default) or 'perturbed'."})
    init_std: float = field(default=0.02, metadata={"help": "Noise scale of the 'perturbed' init."})
    fused_slices: Optional[dict[str, list[bool]]] = field(
        default=None,
        metadata={"help": "Module suffix -> blocks to adapt in a fused projection, e.g. {'c_attn': [True, False, True]}."},
    )
    recompute_base_output: bool = field(
        default=False,
        metadata={"help": "Recompute the base layer's output in the backward instead of saving it: less training "
                          "memory for one extra forward matmul per adapted matrix."},
    )
    modules_to_save: Optional[list[str]] = field(
        default=None, metadata={"help": "Modules trained in full and saved, e.g. a classifier head."}
    )
    layers_to_transform: Optional[Union[list[int], int]] = field(
        default=None, metadata={"help": "Indices of the layers to adapt; all when None."}
    )
    layers_pattern: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "Name of the layer list, used with layers_to_transform."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = HUT_PEFT_TYPE
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"HUTConfig.r must be an integer >= 1, got r={self.r!r}.")
        if self.init not in ("identity", "perturbed"):
            raise ValueError(f"HUTConfig.init must be 'identity' or 'perturbed', got init={self.init!r}.")
        if self.init_std < 0:
            raise ValueError(f"HUTConfig.init_std must be >= 0, got init_std={self.init_std!r}.")
        for name, mask in (self.fused_slices or {}).items():
            if not (isinstance(mask, (list, tuple)) and len(mask) >= 2 and all(isinstance(m, bool) for m in mask)
                    and any(mask)):
                raise ValueError(
                    f"HUTConfig.fused_slices[{name!r}] must be a list of at least two booleans with one True "
                    f"(e.g. [True, False, True] for q, k, v), got {mask!r}."
                )
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError(
                "HUTConfig.layers_pattern is only used together with layers_to_transform; set both or neither."
            )
