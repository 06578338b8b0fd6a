"""The Hadamard adapter (Chen et al., "Hadamard Adapter: An Extreme Parameter-Efficient Adapter Tuning Method
for Pre-trained Language Models"), written here because no package provides it.

It applies ``w ⊙ h + b`` element-wise to each layer's self-attention output ``h`` (the output of the attention
output projection, before the residual add): ``w = 1``, ``b = 0`` at initialisation, so the model starts as the
base model. Because it is a per-channel affine map of a linear layer's output, it merges exactly:
``W' = W diag(w)`` (output side), ``b' = w ⊙ b0 + b``. Parameters are prefixed ``hadamard_``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from .adapters import out_features, replace_module


class HadamardAdapter(nn.Module):
    """``w ⊙ base_layer(x) + b``, shapes (d,), identity at init.

    A projection without a bias (Llama's ``o_proj``) gets no ``b``: a merged model then keeps its own
    architecture (a bias-free ``o_proj``), the same choice as HUT's ``shift=False`` there.

    Args:
        base_layer: The frozen attention output projection (``Linear`` or ``Conv1D``).

    Raises:
        TypeError: ``base_layer`` is not a Linear or Conv1D.
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        d = out_features(base_layer)
        device = base_layer.weight.device
        self.base_layer = base_layer
        self.hadamard_w = nn.Parameter(torch.ones(d, device=device))
        has_bias = getattr(base_layer, "bias", None) is not None
        self.hadamard_b = nn.Parameter(torch.zeros(d, device=device)) if has_bias else None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        h = self.base_layer(*args, **kwargs)
        w = self.hadamard_w.to(h.dtype)
        if self.hadamard_b is None:
            return h * w
        return torch.addcmul(self.hadamard_b.to(h.dtype), h, w)

    @torch.no_grad()
    def merged_base(self) -> nn.Module:
        """The base layer with ``w`` and ``b`` folded in, computed in fp32 and cast back once."""
        base = self.base_layer
        w = self.hadamard_w.float()
        weight = base.weight.data.float()
        # Conv1D stores (in, out): scale columns; Linear stores (out, in): scale rows.
        weight = weight * w[None, :] if isinstance(base, Conv1D) else weight * w[:, None]
        if self.hadamard_b is not None:
            base.bias.data = torch.addcmul(self.hadamard_b.float(), w, base.bias.data.float()).to(base.bias.dtype)
        base.weight.data = weight.to(base.weight.dtype)
        return base


def merge_hadamard(model: nn.Module) -> nn.Module:
    """Fold every Hadamard adapter into its projection and drop the wrappers: the base architecture again,
    whose state dict loads into a fresh model of the same config."""
    for name, module in list(model.named_modules()):
        if isinstance(module, HadamardAdapter):
            replace_module(model, name, module.merged_base())
    return model


def build_hadamard_adapter(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """Registry builder: a Hadamard adapter on every attention output projection; base frozen, head trains.

    Raises:
        ValueError: Any option (the method has none).
    """
    from .arch import freeze_except_head, role_modules

    if options:
        raise ValueError(f"Method 'hadamard_adapter' takes no options, got {', '.join(sorted(options))}.")
    names = role_modules(model, "attn_out")
    freeze_except_head(model)
    for name in names:
        replace_module(model, name, HadamardAdapter(model.get_submodule(name)))
    return model
