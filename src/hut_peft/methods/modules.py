"""The baselines no maintained library gives us for transformers 5: bottleneck adapters (Houlsby, Pfeiffer,
Lin et al.) and the Hadamard adapter (Chen et al.). AdapterHub's ``adapters`` package pins transformers 4.57,
so these are written here, small, in peft's style: a wrapper keeps the frozen layer as ``base_layer`` and
adds parameters with a method prefix (``adapter_``, ``hadamard_``); each is the identity at initialisation.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def _out_features(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, Conv1D):
        return layer.nf
    if isinstance(layer, nn.LayerNorm):
        return layer.normalized_shape[0]
    weight = getattr(layer, "weight", None)
    if weight is not None and weight.dim() == 1:  # RMSNorm and friends
        return weight.shape[0]
    raise TypeError(f"Cannot wrap a {type(layer).__name__}: expected Linear, Conv1D or a norm layer.")


class BottleneckAdapter(nn.Module):
    """``h + up(act(down(norm(h))))`` after a frozen sublayer (Houlsby et al. 2019; Pfeiffer et al. 2021; with
    ``layer_norm=True``, Lin et al. 2020). ``up`` starts at zero, so the model starts as the base model.

    Args:
        base_layer: The frozen sublayer whose output is adapted, (..., d) → (..., d).
        bottleneck: Hidden size m of the adapter; parameters 2dm + m + d (+ 2d with the norm).
        layer_norm: Put a LayerNorm before the down projection (Lin et al.).
    """

    def __init__(self, base_layer: nn.Module, bottleneck: int, layer_norm: bool = False) -> None:
        super().__init__()
        if bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {bottleneck}.")
        d = _out_features(base_layer)
        self.base_layer = base_layer
        ref = next(base_layer.parameters())
        kw = {"device": ref.device, "dtype": torch.float32}
        self.adapter_norm: Optional[nn.LayerNorm] = nn.LayerNorm(d, **kw) if layer_norm else None
        self.adapter_down = nn.Linear(d, bottleneck, **kw)
        self.adapter_up = nn.Linear(bottleneck, d, **kw)
        self.adapter_act = nn.GELU()
        nn.init.normal_(self.adapter_down.weight, std=1e-2)
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        h = self.base_layer(*args, **kwargs)
        z = h.to(self.adapter_down.weight.dtype)
        if self.adapter_norm is not None:
            z = self.adapter_norm(z)
        return h + self.adapter_up(self.adapter_act(self.adapter_down(z))).to(h.dtype)


class HadamardAdapter(nn.Module):
    """``w ⊙ h + b`` on a self-attention output (Chen et al., the Hadamard adapter); w = 1, b = 0 at init.

    Merges exactly into the attention output projection: ``W' = W diag(w)`` (output side), ``b' = w ⊙ b0 + b``.
    A projection without a bias (Llama's o_proj) gets no ``b``, so the merged model keeps its architecture.
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        d = _out_features(base_layer)
        ref = next(base_layer.parameters())
        self.base_layer = base_layer
        self.hadamard_w = nn.Parameter(torch.ones(d, device=ref.device))
        has_bias = getattr(base_layer, "bias", None) is not None
        self.hadamard_b = nn.Parameter(torch.zeros(d, device=ref.device)) if has_bias else None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        h = self.base_layer(*args, **kwargs)
        if self.hadamard_b is None:
            return h * self.hadamard_w.to(h.dtype)
        return torch.addcmul(self.hadamard_b.to(h.dtype), h, self.hadamard_w.to(h.dtype))

    @torch.no_grad()
    def merged_base(self) -> nn.Module:
        """The base layer with the adapter folded in (fp32, cast back once)."""
        base = self.base_layer
        w = self.hadamard_w.float()
        weight = base.weight.data.float()
        weight = weight * w[None, :] if isinstance(base, Conv1D) else weight * w[:, None]
        if self.hadamard_b is not None:
            base.bias.data = torch.addcmul(self.hadamard_b.float(), w, base.bias.data.float()).to(base.bias.dtype)
        base.weight.data = weight.to(base.weight.dtype)
        return base


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def merge_hadamard(model: nn.Module) -> nn.Module:
    """Fold every Hadamard adapter into its projection and drop the wrappers: the base architecture again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, HadamardAdapter):
            replace_module(model, name, module.merged_base())
    return model
