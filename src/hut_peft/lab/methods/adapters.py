"""Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2021, Lin et al. 2020), written here.

No maintained library gives them for transformers 5: peft has none, and AdapterHub's ``adapters`` package pins
transformers 4.57. So this is a small peft-style wrapper: the frozen sublayer stays as ``base_layer`` and the
adapter adds ``up(act(down(h)))`` to its output, residually; ``up`` starts at zero, so the wrapped model equals
the base model at initialisation. Every trainable parameter is prefixed ``adapter_``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


def out_features(layer: nn.Module) -> int:
    """Output width of a ``Linear`` or transformers ``Conv1D`` (weight stored (in, out)).

    Raises:
        TypeError: Any other layer type.
    """
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, Conv1D):
        return layer.nf
    raise TypeError(f"Cannot wrap a {type(layer).__name__}: expected torch.nn.Linear or transformers' Conv1D.")


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` was."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


class BottleneckAdapter(nn.Module):
    """``h + up(act(down(norm(h))))`` with ``h = base_layer(x)``, identity at init (``up`` = 0).

    Placed on the dense output of a sublayer, before the model's residual add and LayerNorm, as Houlsby et al.
    did. With ``layer_norm=True`` the adapter normalises its own input first (Lin et al.'s adapter).

    Parameters for a sublayer of width d and bottleneck m: ``adapter_down`` (d→m, with bias),
    ``adapter_up`` (m→d, with bias), and with ``layer_norm`` an ``adapter_norm`` (2d): ``2dm + m + d (+ 2d)``.

    Args:
        base_layer: The frozen ``Linear`` / ``Conv1D`` whose output is adapted, (..., d_in) → (..., d).
        bottleneck: The hidden size m (>= 1).
        layer_norm: Normalise the adapter input with its own LayerNorm (Lin et al. 2020).
        activation: ``"gelu"`` (default) or ``"relu"``.

    Raises:
        ValueError: bottleneck < 1 or an unknown activation.
        TypeError: ``base_layer`` is not a Linear or Conv1D.
    """

    def __init__(self, base_layer: nn.Module, bottleneck: int, layer_norm: bool = False,
                 activation: str = "gelu") -> None:
        super().__init__()
        if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1:
            raise ValueError(f"bottleneck must be an integer >= 1, got bottleneck={bottleneck!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got activation={activation!r}.")
        d = out_features(base_layer)
        self.base_layer = base_layer
        # fp32 adapter on any base dtype: it is small, and a bf16 residual branch would round away early steps.
        kw: dict[str, Any] = {"device": base_layer.weight.device, "dtype": torch.float32}
        self.adapter_norm: Optional[nn.LayerNorm] = nn.LayerNorm(d, **kw) if layer_norm else None
        self.adapter_down = nn.Linear(d, bottleneck, **kw)
        self.adapter_up = nn.Linear(bottleneck, d, **kw)
        self.adapter_act = ACTIVATIONS[activation]()
        if base_layer.weight.device.type != "meta":
            nn.init.normal_(self.adapter_down.weight, std=1e-2)  # Houlsby et al.: near-identity init
            nn.init.zeros_(self.adapter_down.bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        h = self.base_layer(*args, **kwargs)
        z = h.to(self.adapter_down.weight.dtype)
        if self.adapter_norm is not None:
            z = self.adapter_norm(z)
        return h + self.adapter_up(self.adapter_act(self.adapter_down(z))).to(h.dtype)


def bottleneck_builder(method: str, roles: tuple[str, ...], layer_norm: bool, default_activation: str = "gelu"):
    """A registry builder that wraps the modules of ``roles`` in :class:`BottleneckAdapter` (options:
    ``bottleneck``, default 64, and ``activation``); the base is frozen, a task head trains."""

    def build(model: nn.Module, task_type: Optional[str] = None, bottleneck: int = 64,
              activation: str = default_activation, **options: Any) -> nn.Module:
        from .arch import freeze_except_head, role_modules

        if options:
            raise ValueError(
                f"Method {method!r} takes the options bottleneck and activation, got {', '.join(sorted(options))}."
            )
        names = [n for role in roles for n in role_modules(model, role)]
        freeze_except_head(model)
        for name in names:
            replace_module(model, name, BottleneckAdapter(model.get_submodule(name), bottleneck, layer_norm, activation))
        return model

    build.__doc__ = f"{method}: bottleneck adapters on {', '.join(roles)}" + (" with their own LayerNorm." if layer_norm else ".")
    return build
