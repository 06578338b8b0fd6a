"""The HUT layer: a frozen dense layer wrapped as peft wraps layers (``base_layer``).

Forward, in activation form (DESIGN §1.1; never builds ``W_new``)::

    y = base_layer(x ⊙ a)                 # a = ∏ m_A over active adapters,        (..., d) -> (..., k)
    h = y ⊙ C + (B − C ⊙ b0)              # C = ∏ γ ⊙ m_B,  B = γ ⊙ b0 + β (composed)

which equals ``γ ⊙ (x · diag(m_A) W0 diag(m_B) + b0) + β`` for one adapter. The base layer is called as is,
so its weight is never read here: quantised or sharded bases train unchanged. Merging folds the same
vectors into the weight (``W' = diag(m_A) W0 diag(γ ⊙ m_B)``, ``b' = γ ⊙ b0 + β``), computed in fp32 and
cast back once.

A fused projection (GPT-2's ``c_attn`` = [q | k | v]) can be split into ``nb`` equal output blocks, each
adapted (or left frozen) on its own. Internally every layer works with per-block vectors
``a (nb, d)``, ``C (nb, k/nb)``, ``S (nb, k/nb)``; an ordinary layer is the case ``nb = 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.pytorch_utils import Conv1D

from .bank import AdapterRows, bank_vectors, stack_vectors
from .config import HUTConfig

# Below this magnitude a factor cannot be divided back out exactly: unmerge refuses.
UNMERGE_MIN_FACTOR = 1e-6

Vectors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # a (nb, d), C (nb, ks), S (nb, ks)


def _is_quantised(layer: nn.Module) -> bool:
    weight = getattr(layer, "weight", None)
    return (
        weight is None
        or not torch.is_floating_point(weight)
        or hasattr(weight, "quant_state")
        or type(layer).__name__ in {"Linear8bitLt", "Linear4bit", "QuantLinear"}
    )


class HUTLayer(BaseTunerLayer):
    """Per-adapter HUT parameters on one frozen layer, in peft's per-adapter dicts.

    Parameters per adapter (state-dict keys ``<module>.hut_A.<adapter>`` ...), for a layer d → k:
        hut_A: (d, r), ``M_A``; only its row means ``m_A`` (d,) reach the forward.
        hut_B: (r, k), ``M_B``; only its column means ``m_B`` (k,) reach the forward.
        hut_gamma: (k,), the scale ``γ``.
        hut_beta: (k,), the shift ``β``; absent when the adapter's config has ``shift=False``.
    On a fused layer with ``n`` adapted blocks of width ``ks`` the shapes gain a leading ``n``:
    (n, d, r), (n, r, ks), (n, ks), (n, ks).
    """

    adapter_layer_names: tuple[str, ...] = ("hut_A", "hut_B", "hut_gamma", "hut_beta")
    other_param_names: tuple[str, ...] = ("r", "fused_mask", "recompute_base_output")

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        self.base_layer = base_layer
        self.hut_A = nn.ParameterDict({})
        self.hut_B = nn.ParameterDict({})
        self.hut_gamma = nn.ParameterDict({})
        self.hut_beta = nn.ParameterDict({})
        self.r: dict[str, int] = {}
        self.fused_mask: dict[str, Optional[tuple[bool, ...]]] = {}
        self.recompute_base_output: dict[str, bool] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._hut_bank = None  # mixed batches' stacked vectors (bank.py), built on first use
        self._grad_before_disable: dict[tuple[str, str], bool] = {}  # enable_adapters restores these
        self._unit_bias_hook = None  # set when the base layer is its own FSDP1 unit (_own_unit_forward)
        self._unit_bias: Optional[torch.Tensor] = None
        base = self.get_base_layer()
        if isinstance(base, nn.Linear):
            self.in_features, self.out_features = base.in_features, base.out_features
            self.fan_in_fan_out = False
        elif isinstance(base, Conv1D):
            shape = base.weight.ds_shape if hasattr(base.weight, "ds_shape") else base.weight.shape
            self.in_features, self.out_features = shape
            self.fan_in_fan_out = True
        else:
            raise TypeError(
                f"HUT cannot adapt a {type(base).__name__}: it supports torch.nn.Linear and transformers' "
                "Conv1D. Remove this module from target_modules."
            )
        self._register_load_state_dict_pre_hook(self._check_checkpoint_shapes)

    def update_layer(
        self, adapter_name: str, config: HUTConfig, fused_mask: Optional[Sequence[bool]] = None, **kwargs: Any
    ) -> None:
        """Create the adapter's parameters (identity, or identity plus noise) on the base layer's device.

        Raises:
            ValueError: ``fused_mask`` does not split this layer's output into equal blocks.
        """
        r, d, k = config.r, self.in_features, self.out_features
        lead: tuple[int, ...] = ()
        if fused_mask is not None:
            nb = len(fused_mask)
            if k % nb:
                raise ValueError(
                    f"fused_slices has {nb} blocks but this layer has {k} outputs, not divisible by {nb}: "
                    "fused_slices is for projections like GPT-2's c_attn (3 equal blocks q, k, v)."
                )
            self.fused_mask[adapter_name] = tuple(bool(m) for m in fused_mask)
            lead, k = (sum(fused_mask),), k // nb
        else:
            self.fused_mask[adapter_name] = None
        self.r[adapter_name] = r
        self.recompute_base_output[adapter_name] = bool(config.recompute_base_output)
        self.hut_A[adapter_name] = nn.Parameter(torch.ones(*lead, d, r))
        self.hut_B[adapter_name] = nn.Parameter(torch.ones(*lead, r, k))
        self.hut_gamma[adapter_name] = nn.Parameter(torch.ones(*lead, k))
        if config.shift:
            self.hut_beta[adapter_name] = nn.Parameter(torch.zeros(*lead, k))
        if config.init == "perturbed":
            with torch.no_grad():
                for name in self.adapter_layer_names:
                    params = getattr(self, name)
                    if adapter_name in params:
                        params[adapter_name].add_(torch.randn_like(params[adapter_name]) * config.init_std)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        # Only the new adapter's trainability is set here: peft's set_adapter would visit every loaded adapter,
        # which makes adding K adapters cost O(K²).
        trainable = adapter_name in self.active_adapters and not config.inference_mode
        for name in self.adapter_layer_names:
            params = getattr(self, name)
            if adapter_name in params:
                params[adapter_name].requires_grad_(trainable)
        self._hut_bank = None

    def add_saved_adapter(
        self,
        adapter_name: str,
        config: HUTConfig,
        values: dict[str, torch.Tensor],
        like: str,
        requires_grad: bool = False,
    ) -> None:
        """Create an adapter straight from saved tensors (bulk loading, loading.py): no identity init, no random
        draw, no visit of the other adapters. It is placed, typed and split (fused blocks) like the loaded
        adapter ``like``, which targets the same modules.

        Raises:
            ValueError: A tensor is missing or its shape does not fit this layer.
        """
        mask = self.fused_mask.get(like)
        lead = (sum(mask),) if mask else ()
        d, k, r = self.in_features, self.out_features // (len(mask) if mask else 1), config.r
        shapes = {"hut_A": (*lead, d, r), "hut_B": (*lead, r, k), "hut_gamma": (*lead, k)}
        if config.shift:
            shapes["hut_beta"] = (*lead, k)
        for attr, shape in shapes.items():
            value = values.get(attr)
            if value is None or tuple(value.shape) != shape:
                found = "is missing" if value is None else f"has shape {tuple(value.shape)}"
                raise ValueError(
                    f"The saved HUT adapter '{adapter_name}' does not fit this model: its '{attr}' for a layer "
                    f"{self.in_features}→{self.out_features} {found}, expected {shape} (r={r}). Load the adapter on "
                    "the base model it was trained for, with its saved adapter_config.json."
                )
        ref = self.hut_gamma[like]
        for attr in shapes:
            value = values[attr].to(device=ref.device, dtype=ref.dtype)
            getattr(self, attr)[adapter_name] = nn.Parameter(value, requires_grad=requires_grad)
        self.r[adapter_name] = r
        self.fused_mask[adapter_name] = mask
        self.recompute_base_output[adapter_name] = bool(config.recompute_base_output)
        self._hut_bank = None

    def _move_adapter_to_device_of_base_layer(self, adapter_name: str, device: Optional[torch.device] = None) -> None:
        """peft's move of one adapter to the base layer's device and floating dtype, without its scan of every
        loaded adapter's parameters (which made each ``add_adapter`` slower than the last)."""
        base_device, base_dtype = self._get_base_layer_device_and_dtype(self.get_base_layer())
        target = device if device is not None else base_device
        if target is None:
            return
        dtype = base_dtype if base_dtype is not None and base_dtype.is_floating_point else None
        for name in self.adapter_layer_names:
            params = getattr(self, name)
            if adapter_name in params and params[adapter_name].device.type != "meta":
                params[adapter_name] = params[adapter_name].to(target, dtype=dtype)

    def enable_adapters(self, enabled: bool) -> None:
        """peft's toggle (a disabled layer's adapters do not require grad), at the cost of the active adapters only.

        peft's own version sets ``requires_grad`` on every loaded adapter's parameters, so with K adapters loaded
        ``with model.disable_adapter():`` paid O(K) per layer on entry and again on exit. The inactive adapters are
        frozen already (``set_adapter`` and ``load_adapters`` keep them so), so only the active ones change here,
        and leaving the context restores exactly what they had (an adapter loaded for inference stays frozen).
        """
        if enabled != self._disable_adapters:  # already in that state
            return
        for name in self.active_adapters:
            for dict_name in self.adapter_layer_names:
                params = getattr(self, dict_name)
                if name not in params:
                    continue
                if enabled:
                    params[name].requires_grad_(self._grad_before_disable.pop((dict_name, name), True))
                else:
                    self._grad_before_disable[(dict_name, name)] = params[name].requires_grad
                    params[name].requires_grad_(False)
        self._disable_adapters = not enabled

    def delete_adapter(self, adapter_name: str) -> None:
        """peft's delete, and drop the mixed-batch bank (its slots follow the set of adapters)."""
        super().delete_adapter(adapter_name)
        self._hut_bank = None

    # ----------------------------------------------------------------------------------------- maths
    def adapter_vectors(self, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(m_A, m_B, γ, β)`` of one adapter as parameters shape them: (d,), (k,), (k,), (k,) for an ordinary
        layer; with a leading adapted-block dimension on a fused one."""
        m_a = self.hut_A[adapter_name].mean(dim=-1)
        m_b = self.hut_B[adapter_name].mean(dim=-2)
        gamma = self.hut_gamma[adapter_name]
        beta = self.hut_beta[adapter_name] if adapter_name in self.hut_beta else torch.zeros_like(gamma)
        return m_a, m_b, gamma, beta

    def _block_vectors(self, adapter_name: str, nb: int) -> tuple[torch.Tensor, ...]:
        """``(m_A (nb, d), m_B (nb, ks), γ (nb, ks), β (nb, ks))``; frozen blocks get the identity."""
        m_a, m_b, gamma, beta = self.adapter_vectors(adapter_name)
        mask = self.fused_mask.get(adapter_name)
        if mask is None:  # an ordinary adapter seen through nb blocks
            return m_a.expand(nb, -1), m_b.view(nb, -1), gamma.view(nb, -1), beta.view(nb, -1)
        if len(mask) != nb:
            raise ValueError(f"Adapters on one layer split it into {nb} and {len(mask)} blocks: use one split.")
        index = torch.tensor([i for i, m in enumerate(mask) if m], device=m_a.device)
        ks = self.out_features // nb
        full = []
        for value, fill in ((m_a, 1.0), (m_b, 1.0), (gamma, 1.0), (beta, 0.0)):
            width = value.shape[-1] if value is m_a else ks
            out = torch.full((nb, width), fill, dtype=value.dtype, device=value.device)
            full.append(out.index_copy(0, index, value))
        return tuple(full)

    def _num_blocks(self, adapter_names: Sequence[str]) -> int:
        # A plain loop: torch.compile (dynamo) cannot trace ``max(<generator>, default=...)`` and breaks the
        # graph at every adapted layer on it.
        nb = 1
        for name in adapter_names:
            mask = self.fused_mask.get(name)
            if mask:
                nb = max(nb, len(mask))
        return nb

    def _composed(self, adapter_names: Sequence[str], base_bias: Optional[torch.Tensor]) -> Vectors:
        """Input scale ``a``, output scale ``C`` and shift ``S`` such that ``h = base(x ⊙ a) ⊙ C + S`` per block.

        Adapters compose as successive merges: each maps ``(W, b)`` to ``(diag(m_A) W diag(γ m_B), γ b + β)``.
        """
        nb = self._num_blocks(adapter_names)
        a = c = bias = None
        b0 = base_bias.view(nb, -1) if base_bias is not None else None
        for name in adapter_names:
            m_a, m_b, gamma, beta = self._block_vectors(name, nb)
            a = m_a if a is None else a * m_a
            c = gamma * m_b if c is None else c * gamma * m_b
            prev = b0.to(gamma.dtype) if bias is None and b0 is not None else bias
            bias = beta if prev is None else torch.addcmul(beta, gamma, prev)
        assert a is not None and c is not None and bias is not None
        shift = bias if b0 is None else bias - c * b0.to(c.dtype)
        return a, c, shift

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        adapter_names = kwargs.pop("adapter_names", None)
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        if adapter_names is not None:
            return self._mixed_batch_forward(x, *args, adapter_names=adapter_names, **kwargs)
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        active = [name for name in self.active_adapters if name in self.hut_A]
        if not active:
            return self.base_layer(x, *args, **kwargs)
        if hasattr(self.base_layer, "_fsdp_wrapped_module"):
            return self._own_unit_forward(x, active, *args, **kwargs)
        a, c, s = self._composed(active, self._base_bias())
        if torch.is_grad_enabled() and self._recomputes(active):
            # Saves only the checkpoint's inputs (x, and the small a, c, s); y is recomputed in the backward.
            # preserve_rng_state=False: the base is a dense layer without randomness, so nothing to replay.
            return checkpoint(self._adapted, x, a, c, s, *args, use_reentrant=False, preserve_rng_state=False,
                              **kwargs)
        return self._adapted(x, a, c, s, *args, **kwargs)

    def _own_unit_forward(self, x: torch.Tensor, active: Sequence[str], *args: Any, **kwargs: Any) -> torch.Tensor:
        """The base layer is its own FSDP1 unit (``hut_peft.hut.distributed``'s wrap policy, which FSDP1 with
        ``use_orig_params=False`` needs): its weight and bias exist only inside its own forward, so nothing here
        reads them. A forward hook clones ``b0`` while the unit is gathered; a fused layer runs the base once on its
        ``nb`` scaled inputs stacked and keeps block ``j`` of output ``j`` (``nb`` times that layer's FLOPs)."""
        if self._unit_bias_hook is None:
            self._unit_bias_hook = self.base_layer._fsdp_wrapped_module.register_forward_hook(self._keep_unit_bias)
        a = self._composed(active, None)[0]
        nb = a.shape[0]
        if nb == 1:
            y = self.base_layer(x * a[0].to(x.dtype), *args, **kwargs)
        else:
            y = self.base_layer(torch.stack([x * a[j].to(x.dtype) for j in range(nb)]), *args, **kwargs)
        _, c, s = self._composed(active, self._unit_bias)
        if nb == 1:
            return torch.addcmul(s[0].to(y.dtype), y, c[0].to(y.dtype))
        ks = self.out_features // nb
        outs = [torch.addcmul(s[j].to(y.dtype), y[j][..., j * ks:(j + 1) * ks], c[j].to(y.dtype)) for j in range(nb)]
        return torch.cat(outs, dim=-1)

    def _keep_unit_bias(self, module: nn.Module, inputs: Any, output: Any) -> None:
        bias = getattr(module, "bias", None)
        self._unit_bias = None if bias is None else bias.detach().clone()

    def _recomputes(self, adapter_names: Sequence[str]) -> bool:
        for name in adapter_names:  # a plain loop, as in _num_blocks: nothing for torch.compile to trip on
            if self.recompute_base_output.get(name, False):
                return True
        return False

    def _adapted(self, x: torch.Tensor, a: torch.Tensor, c: torch.Tensor, s: torch.Tensor, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        """``base(x ⊙ a) ⊙ c + s`` with composed vectors (``a`` (nb, d), ``c``, ``s`` (nb, ks))."""
        if a.shape[0] == 1:
            y = self.base_layer(x * a[0].to(x.dtype), *args, **kwargs)
            return torch.addcmul(s[0].to(y.dtype), y, c[0].to(y.dtype))
        return self._blocked_forward(x, a, c, s)

    def _blocked_forward(self, x: torch.Tensor, a: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Fused layers: each output block gets its own input scale, so one matmul per block (same FLOPs).

        ``a`` is (nb, d) or, for a mixed batch, (B, nb, d) with ``x`` of shape (B, ..., d); ``c``, ``s`` alike.
        """
        base = self.get_base_layer()
        nb = a.shape[-2]
        ks = self.out_features // nb
        weight, bias = base.weight, base.bias
        per_row = a.dim() == 3
        view = (x.shape[0],) + (1,) * (x.dim() - 2) if per_row else ()
        outs = []
        for j in range(nb):
            cols = slice(j * ks, (j + 1) * ks)
            w = weight[:, cols].T if self.fan_in_fan_out else weight[cols]  # (ks, d) as F.linear wants
            aj, cj, sj = (t[:, j].reshape(*view, -1) if per_row else t[j] for t in (a, c, s))
            y = F.linear(x * aj.to(x.dtype), w, None if bias is None else bias[cols])
            outs.append(torch.addcmul(sj.to(y.dtype), y, cj.to(y.dtype)))
        return torch.cat(outs, dim=-1)

    def _mixed_batch_forward(
        self, x: torch.Tensor, *args: Any, adapter_names: Sequence[str] | AdapterRows, **kwargs: Any
    ) -> torch.Tensor:
        """One adapter per row (or ``"__base__"``): one base call for the batch, each row's vectors gathered from
        the stacked bank (bank.py); with gradients enabled, from the batch's adapters stacked with autograd."""
        if self.merged:
            raise ValueError(
                "Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` first."
            )
        if hasattr(self.base_layer, "_fsdp_wrapped_module"):
            raise ValueError(
                "Mixed-adapter batches (`adapter_names`) need the base layer's bias outside its forward, which FSDP1 "
                "frees when the base layer is its own unit. Serve from an unsharded model (load the saved adapters "
                "with hut_peft.load_adapters), or shard with FSDP2 / FSDP1 use_orig_params=True and the block policy."
            )
        rows = adapter_names
        if not isinstance(rows, AdapterRows):  # called directly rather than through the tuner
            rows = AdapterRows(tuple(rows), tuple(self.hut_A.keys()))
        if rows.joint is not None:  # K tenants trained together (tenants.py): the present tenants' leaves
            a, c, s = rows.joint.vectors(self)
            slots = rows.joint.rows
        elif torch.is_grad_enabled():
            a, c, s = stack_vectors(self, rows.present)
            slots = rows.slots("present", x.shape[0], a.device)
        else:
            a, c, s = bank_vectors(self, rows)
            slots = rows.slots("layout", x.shape[0], a.device)
        a, c, s = (t.index_select(0, slots) for t in (a, c, s))  # (B, nb, ·)
        if a.shape[1] > 1:
            return self._blocked_forward(x, a, c, s)
        view = (x.shape[0],) + (1,) * (x.dim() - 2)
        y = self.base_layer(x * a[:, 0].reshape(*view, -1).to(x.dtype), *args, **kwargs)
        return torch.addcmul(s[:, 0].reshape(*view, -1).to(y.dtype), y, c[:, 0].reshape(*view, -1).to(y.dtype))

    def _base_bias(self) -> Optional[torch.Tensor]:
        return getattr(self.get_base_layer(), "bias", None)

    # ----------------------------------------------------------------------------------------- merge
    def _scaled_weight(self, weight: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        """``diag(row) W diag(col)`` per block, for W in (in, out) terms, whatever the storage layout.

        ``row`` is (nb, d) and ``col`` (nb, ks): block j of the outputs scales its inputs by ``row[j]``.
        """
        nb, d = row.shape
        w_io = weight if self.fan_in_fan_out else weight.T  # (d, k)
        scaled = (w_io.reshape(d, nb, -1) * row.T.unsqueeze(-1) * col.unsqueeze(0)).reshape(d, -1)
        return scaled if self.fan_in_fan_out else scaled.T.contiguous()

    def _check_mergeable(self) -> nn.Module:
        base = self.get_base_layer()
        if _is_quantised(base):
            raise ValueError(
                f"Cannot merge or unmerge HUT into a quantised {type(base).__name__}: the scales would have to be "
                "applied to dequantised weights and re-quantised, which is lossy. Keep the adapter unmerged, or "
                "merge exactly into an unquantised base: load the base without quantization_config, then "
                "PeftModel.from_pretrained(base, adapter_dir).merge_and_unload(); or, for a quantised merged model, "
                "hut_peft.hut.quantized_merge.merge_and_unload_requantized(model), which reports the error it adds."
            )
        return base

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        """Fold the adapters into the base weight and bias (exact up to one fp32 rounding).

        Args:
            safe_merge: Compute into a copy and check it is finite before writing.
            adapter_names: Adapters to merge; the active ones when None.

        Raises:
            ValueError: The base is quantised; a shift β ≠ 0 must merge into a layer without a bias; the result
                is not finite under ``safe_merge``.
        """
        adapter_names = check_adapters_to_merge(self, adapter_names)
        if not adapter_names:
            return
        base = self._check_mergeable()
        for name in adapter_names:
            if name not in self.hut_A:
                continue
            nb = self._num_blocks([name])
            with torch.no_grad():
                m_a, m_b, gamma, beta = (v.detach().float() for v in self._block_vectors(name, nb))
                weight = self._scaled_weight(base.weight.data.float(), m_a, gamma * m_b)
                if base.bias is not None:
                    bias = torch.addcmul(beta, gamma, base.bias.data.float().view(nb, -1)).reshape(-1)
                elif bool((beta != 0).any()):
                    raise ValueError(
                        f"Cannot merge HUT adapter '{name}': its shift β is non-zero but the base "
                        f"{type(base).__name__} has no bias to hold it. Train with HUTConfig(shift=False) for "
                        "bias-free layers (Llama attention), or keep the adapter unmerged."
                    )
                else:
                    bias = None
                if safe_merge and not (
                    torch.isfinite(weight).all() and (bias is None or torch.isfinite(bias).all())
                ):
                    raise ValueError(
                        f"NaNs detected in the merged weights. The adapter {name} seems to be broken (NaN or inf "
                        "in its merged weight or bias; this layer was left unchanged)."
                    )
                base.weight.data = weight.to(base.weight.dtype)
                if bias is not None:
                    base.bias.data = bias.to(base.bias.dtype)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """Divide the merged adapters back out, last merged first.

        Raises:
            ValueError: The base is quantised, or a factor (m_A, γ ⊙ m_B or γ) is below 1e-6 in magnitude, where
                division cannot recover the original weights.
        """
        if not self.merged:
            return
        base = self._check_mergeable()
        while self.merged_adapters:
            name = self.merged_adapters[-1]
            if name not in self.hut_A:
                self.merged_adapters.pop()
                continue
            nb = self._num_blocks([name])
            with torch.no_grad():
                m_a, m_b, gamma, beta = (v.detach().float() for v in self._block_vectors(name, nb))
                col = gamma * m_b
                for label, factor in (("m_A", m_a), ("gamma * m_B", col), ("gamma", gamma)):
                    if label == "gamma" and base.bias is None:
                        continue
                    smallest = factor.abs().min().item()
                    if smallest < UNMERGE_MIN_FACTOR:
                        raise ValueError(
                            f"Cannot unmerge HUT adapter '{name}': {label} has an entry of magnitude {smallest:.2e}, "
                            "so dividing it back out would not recover the base weights. Reload the base model "
                            "instead, or use merge_adapter() only on adapters whose scales are non-zero."
                        )
                base.weight.data = self._scaled_weight(base.weight.data.float(), 1.0 / m_a, 1.0 / col).to(
                    base.weight.dtype
                )
                if base.bias is not None:
                    restored = (base.bias.data.float().view(nb, -1) - beta) / gamma
                    base.bias.data = restored.reshape(-1).to(base.bias.dtype)
            self.merged_adapters.pop()

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """``W_new − W0`` in the base layer's storage layout (for inspection; never used in the forward)."""
        base = self.get_base_layer()
        nb = self._num_blocks([adapter_name])
        m_a, m_b, gamma, _ = (v.detach().float() for v in self._block_vectors(adapter_name, nb))
        w0 = base.weight.data.float()
        return self._scaled_weight(w0, m_a, gamma * m_b) - w0

    # ----------------------------------------------------------------------------------- checkpoints
    def _check_checkpoint_shapes(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Fail with a clear message when a saved adapter does not fit this layer."""
        for layer_name in self.adapter_layer_names:
            params = getattr(self, layer_name)
            for adapter_name, param in params.items():
                key = f"{prefix}{layer_name}.{adapter_name}"
                if key in state_dict and tuple(state_dict[key].shape) != tuple(param.shape):
                    raise ValueError(
                        f"The HUT checkpoint does not fit this model: '{key}' has shape "
                        f"{tuple(state_dict[key].shape)} in the checkpoint but {tuple(param.shape)} here "
                        f"(layer {self.in_features}→{self.out_features}, r={self.r.get(adapter_name)}). Load the "
                        "adapter on the base model it was trained for, with its saved adapter_config.json."
                    )


class HUTLinear(nn.Module, HUTLayer):
    """HUT on a ``torch.nn.Linear`` or transformers' ``Conv1D`` (weight stored (in, out)).

    Its class name is its own (not ``Linear``), so FSDP configs can name it: accelerate's
    ``fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer,HUTLinear,Linear`` resolves ``Linear`` to torch's
    (docs/workflows.md, "Multi-GPU and multi-node"). It still prints as ``hut.Linear``.
    """

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: HUTConfig,
        fused_mask: Optional[Sequence[bool]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        HUTLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, fused_mask=fused_mask)

    forward = HUTLayer.forward

    def _get_name(self) -> str:
        return "Linear"

    def __repr__(self) -> str:
        """The base layer and the adapters by name, not every adapter's tensors: with K adapters loaded the default
        repr is K lines per parameter dict, and peft builds it each time ``disable_adapter()`` reads the model's
        status."""
        names = list(self.hut_A.keys())
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} adapters)" if len(names) > 4 else "")
        return f"hut.Linear(\n  (base_layer): {self.base_layer!r}\n  (adapters): [{shown}]\n)"


Linear = HUTLinear  # the name peft's tuners use for their layer classes, and this package's until 0.2
