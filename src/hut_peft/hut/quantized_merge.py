"""Merge HUT adapters into bitsandbytes 4-bit / 8-bit bases on request: dequantise → merge → re-quantise.

``merge_and_unload()`` refuses a quantised base (``HUTLayer.merge``): scaling the weights and quantising them
again adds a rounding error that the adapter was not trained with. The exact route is to merge into an
unquantised copy of the base (docs/workflows.md). Where a quantised merged model is what you want to ship (an
engine that loads bitsandbytes checkpoints), :func:`merge_and_unload_requantized` does it and reports that
error for every layer, so you can judge it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .layer import HUTLayer, _is_quantised


def _requantize_like(weight: torch.Tensor, values: torch.Tensor) -> nn.Parameter:
    """``values`` (float, (out, in)) quantised with the settings of the bitsandbytes parameter ``weight``."""
    import bitsandbytes as bnb

    kind = type(weight).__name__
    if kind == "Params4bit":
        state = weight.quant_state
        return bnb.nn.Params4bit(values.to(state.dtype).cpu(), requires_grad=False, quant_type=state.quant_type,
                                 blocksize=state.blocksize, compress_statistics=weight.compress_statistics,
                                 quant_storage=weight.quant_storage).to(weight.device)
    if kind == "Int8Params":
        return bnb.nn.Int8Params(values.to(torch.float16).cpu(), requires_grad=False,
                                 has_fp16_weights=weight.has_fp16_weights).to(weight.device)
    raise TypeError(f"Cannot re-quantise a {kind}: only bitsandbytes Params4bit and Int8Params are supported.")


def _dequantize(layer: nn.Module) -> torch.Tensor:
    """The float (out, in) weight of a bitsandbytes layer.

    On CPUs with AVX-512 BF16, bitsandbytes repacks a 4-bit weight into a kernel-specific layout at its first
    inference forward (``quant_state.packing_format_for_cpu``), which ``dequantize_4bit`` does not read: the
    weight is unpacked first (bitsandbytes' own inverse; the next inference forward packs it again).
    """
    from peft.utils.integrations import dequantize_bnb_weight

    weight = layer.weight
    state = getattr(weight, "quant_state", None)
    if getattr(state, "packing_format_for_cpu", False):
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

        weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
    return dequantize_bnb_weight(weight, state=getattr(layer, "state", None)).float()


def merge_and_unload_requantized(model: nn.Module, adapter_names: Optional[list[str]] = None,
                                 safe_merge: bool = False) -> tuple[nn.Module, dict[str, float]]:
    """Merge the HUT adapters of a peft model whose base is quantised with bitsandbytes, and unload.

    Each quantised layer's weight is dequantised to fp32, merged exactly as ``HUTLayer.merge`` merges an
    unquantised layer (same checks: a shift β into a bias-free layer is refused), and quantised again with
    the layer's own settings (NF4/FP4 and block size; int8 row scales). Unquantised layers merge as usual.

    Returns:
        The base model (quantised, with the adapters folded in) and, per quantised layer, the relative
        re-quantisation error ``max |dequant(requant(W')) − W'| / max |W'|`` of its merged weight ``W'``.

    Raises:
        ValueError: The merge itself is refused (see ``HUTLayer.merge``); no HUT layer was found.
        TypeError: A quantised weight that is not a bitsandbytes 4-bit or 8-bit parameter.
    """
    errors: dict[str, float] = {}
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, HUTLayer)]
    if not layers:
        raise ValueError("merge_and_unload_requantized found no HUT layer: pass a peft model with a HUT adapter.")
    for name, layer in layers:
        base = layer.get_base_layer()
        if not _is_quantised(base):
            layer.merge(safe_merge=safe_merge, adapter_names=adapter_names)
            continue
        # Merge into a float stand-in of the base with all of HUTLayer.merge's checks, then quantise back.
        stand_in = nn.Linear(layer.in_features, layer.out_features, bias=base.bias is not None)
        stand_in.weight = nn.Parameter(_dequantize(base), requires_grad=False)
        if base.bias is not None:
            stand_in.bias = nn.Parameter(base.bias.detach().float().clone(), requires_grad=False)
        layer.base_layer = stand_in
        try:
            layer.merge(safe_merge=safe_merge, adapter_names=adapter_names)
        finally:
            layer.base_layer = base
        merged = stand_in.weight.data
        base.weight = _requantize_like(base.weight, merged)
        if hasattr(base, "state") and hasattr(base.state, "SCB"):  # 8-bit: drop the old weight's int8 state;
            base.state.CB = base.state.SCB = None  # the next forward takes the new one from the weight
        if base.bias is not None:
            base.bias.data = stand_in.bias.data.to(base.bias.dtype)
        errors[name] = ((_dequantize(base) - merged).abs().max() / merged.abs().max().clamp_min(1e-30)).item()
    return model.unload(), errors
