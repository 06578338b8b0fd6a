"""vLLM's LoRA linear wrappers, taught HUT: per-slot vector banks gathered by each token's adapter slot.

vLLM wraps every adaptable linear layer in a ``*WithLoRA`` class that keeps per-slot stacks (``max_loras`` rows)
filled by ``set_lora``/``reset_lora`` and reads each token's slot from the shared punica wrapper. The classes
here subclass those wrappers one for one (``HUT_SUBCLASS``) and add three banks beside LoRA's stacks:

    hut_in[s]  (max_loras + 1, d)    input scale a = m_A, per output slice s of a fused layer (q | k | v)
    hut_out    (max_loras + 1, k)    output scale c = γ ⊙ m_B
    hut_shift  (max_loras + 1, k)    shift s (vectors.shift: what makes the final output γ ⊙ (... + b0) + β)

Row ``max_loras`` is the identity. vLLM marks a token without an adapter with slot -1, and PyTorch's indexing
wraps -1 to that last row, so base-model tokens need no remapping. The forward is::

    y = base(x ⊙ hut_in[slot]) ⊙ hut_out[slot] + hut_shift[slot]      (one GEMM per output slice if fused)

three gathers per adapted layer whatever the mix of adapters in the batch: no loop over adapters. A slot may
hold a real LoRA instead (``set_lora`` tells the payloads apart, vectors.is_hut_payload): its HUT rows are the
identity and vLLM's own LoRA path runs on top, only while some slot holds a non-zero LoRA (and, on CPU, not on
tokens without an adapter: vLLM's CPU ops would give them the last slot's LoRA, ``_lora_on_cpu``).

Fused projections: each peft module (q_proj, k_proj, v_proj) has its own input scale, so a fused ``qkv_proj``
runs one GEMM per slice on its rows of W0 (same FLOPs as one GEMM) with ``F.linear``. On CPU vLLM repacks W0 for
its kernels and may drop it; plugin.py keeps it for fused layers, so every slice reads the plain rows and the
whole-layer GEMM (a token of no adapter, or no slice scaled) stays vLLM's own, whichever CPU kernel vLLM picked.
An earlier version packed each slice with vLLM's dispatcher and emptied W0: no faster (301.4 vs 298.0 tokens/s),
and on CPUs where vLLM falls back to ``F.linear`` (AVX2 only, bf16) the emptied W0 crashed the engine. On a base
without a plain weight (quantised) each scaled slice costs one full GEMM instead.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
import torch.nn.functional as F
from vllm.lora.layers import (
    ColumnParallelLinearWithLoRA,
    MergedColumnParallelLinearWithLoRA,
    MergedQKVParallelLinearWithLoRA,
    QKVParallelLinearWithLoRA,
    ReplicatedLinearWithLoRA,
    RowParallelLinearWithLoRA,
)
from vllm.platforms import current_platform

from .vectors import decode, is_hut_payload, shift

COMPILE_ENV = "HUT_PEFT_VLLM_COMPILE"


def compiled_hut_only() -> bool:
    """Whether this process serves HUT adapters only, compiled (CPU with ``HUT_PEFT_VLLM_COMPILE=1``; plugin.py)."""
    return current_platform.is_cpu() and os.environ.get(COMPILE_ENV, "0") == "1"


class HUTLinearMixin:
    """HUT banks and forward for a vLLM LoRA linear wrapper; put it first in the bases of a wrapper subclass."""

    def create_lora_weights(self, max_loras: int, lora_config: Any, model_config: Any = None) -> None:
        super().create_lora_weights(max_loras, lora_config, model_config)  # LoRA's stacks: vLLM's warm-up uses them
        rows, dtype, device = max_loras + 1, lora_config.lora_dtype, self.device
        out_size = sum(self.output_slices)
        self.hut_in = torch.ones(self.n_slices, rows, self.input_size, dtype=dtype, device=device)
        self.hut_out = torch.ones(rows, out_size, dtype=dtype, device=device)
        self.hut_shift = torch.zeros(rows, out_size, dtype=dtype, device=device)
        # Which slots hold what, to skip work nobody asked for. Only on CPU, where vLLM runs eagerly: a compiled
        # or graph-captured forward must not branch on Python state, so elsewhere every branch is taken. A CPU
        # engine compiled for HUT adapters only (plugin.compiled_hut_only) takes every branch but LoRA's.
        self._hut_only = compiled_hut_only()
        self._hut_eager = current_platform.is_cpu() and not self._hut_only
        self._hut_slots: set[int] = set()
        self._hut_scaled: list[set[int]] = [set() for _ in range(self.n_slices)]
        self._lora_slots: set[int] = set()

    # ------------------------------------------------------------------------------------------- slots
    def reset_lora(self, index: int) -> None:
        super().reset_lora(index)
        self.hut_in[:, index].fill_(1)
        self.hut_out[index].fill_(1)
        self.hut_shift[index].zero_()
        self._hut_slots.discard(index)
        self._lora_slots.discard(index)
        for scaled in self._hut_scaled:
            scaled.discard(index)

    def set_lora(self, index: int, lora_a: Any, lora_b: Any) -> None:
        a_list = lora_a if isinstance(lora_a, list) else [lora_a]
        b_list = lora_b if isinstance(lora_b, list) else [lora_b]
        hut = [is_hut_payload(a, b) for a, b in zip(a_list, b_list)]
        if not any(hut):  # a LoRA (or vLLM's all-zero warm-up dummy): vLLM's own path
            super().set_lora(index, lora_a, lora_b)
            self._hut_slots.discard(index)
            if any(b is not None and bool(b.any()) for b in b_list):
                self._lora_slots.add(index)
            return
        if not all(h or a is None for h, a in zip(hut, a_list)) or len(a_list) != self.n_slices:
            raise ValueError(f"{self.base_layer.prefix}: one adapter mixes HUT and LoRA weights, or packs "
                             f"{len(a_list)} modules into this layer's {self.n_slices} slices")
        self.reset_lora(index)
        if self.tp_size > 1:  # vLLM's own slicing: A by input columns, B by output rows
            lora_a, lora_b = self.slice_lora_a(lora_a), self.slice_lora_b(lora_b)
            a_list = lora_a if isinstance(lora_a, list) else [lora_a]
            b_list = lora_b if isinstance(lora_b, list) else [lora_b]
        start = 0
        for s, (a_s, b_s, width) in enumerate(zip(a_list, b_list, self.output_slices)):
            if a_s is not None:
                a, c, gamma, beta = decode(a_s, b_s)
                self.hut_in[s, index].copy_(a)
                self.hut_out[index, start:start + width].copy_(c)
                self.hut_shift[index, start:start + width].copy_(self._hut_shift(c, gamma, beta, start, width))
                if not bool((a == 1).all()):
                    self._hut_scaled[s].add(index)
            start += width
        self._hut_slots.add(index)

    def _hut_shift(self, c: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, start: int,
                   width: int) -> torch.Tensor:
        """The shift for this layer's output rows ``[start, start + width)``, given which bias it adds where."""
        if isinstance(self, RowParallelLinearWithLoRA) and self.tp_rank > 0:
            return torch.zeros_like(c)  # the all-reduce sums ranks: rank 0 alone adds the shift (and b0)
        bias = getattr(self.base_layer, "bias", None)
        bias = None if bias is None else bias[start:start + width]
        return shift(c, gamma, beta, bias, bias_in_output=not self.base_layer.skip_bias_add)

    # ----------------------------------------------------------------------------------------- forward
    def apply(self, x: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # the transformers backend passes (1, T, d)
        slot = self.punica_wrapper._token_lora_indices[: x2.shape[0]]  # (T,), -1 = no adapter
        hut = not self._hut_eager or bool(self._hut_slots)
        if not hut or not any(self._scaled(s) for s in range(self.n_slices)):
            y = self._get_quant_method().apply(self.base_layer, x2, bias)
        elif self.n_slices == 1:
            y = self._get_quant_method().apply(self.base_layer, x2 * self.hut_in[0][slot], bias)
        else:
            y = self._sliced_base(x2, slot, bias)
        if hut:
            y = torch.addcmul(self.hut_shift[slot], y, self.hut_out[slot])
        if self._hut_eager:
            if self._lora_slots:
                y = self._lora_on_cpu(x2, y, slot)
        elif not self._hut_only:  # GPUs: vLLM's LoRA path every step (its kernels skip slot -1)
            y = self._apply_lora_to_output(x2, y)
        return y.reshape(*x.shape[:-1], y.shape[-1])

    def _lora_on_cpu(self, x: torch.Tensor, y: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """vLLM's LoRA on top of ``y``, except on tokens without an adapter.

        vLLM's CPU LoRA ops index the stacks with the raw slot, so a token without an adapter (-1) receives the
        LoRA in the last slot whenever all ``max_loras`` slots are taken (vllm/lora/ops/torch_ops/lora_ops.py);
        its GPU kernels skip -1. Such rows keep ``y`` here.
        """
        base_rows = slot < 0
        if not bool(base_rows.any()):
            return self._apply_lora_to_output(x, y)
        kept = y.clone()
        return torch.where(base_rows.unsqueeze(-1), kept, self._apply_lora_to_output(x, y))

    def _scaled(self, s: int) -> bool:
        return not self._hut_eager or bool(self._hut_scaled[s])

    def _sliced_base(self, x: torch.Tensor, slot: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """``[(x ⊙ a_s[slot]) W0_sᵀ + b0_s]`` over the output slices of a fused layer, concatenated."""
        weight = getattr(self.base_layer, "weight", None)
        plain = _is_plain(weight, sum(self.output_slices))
        outs, start, full = [], 0, None
        for s, width in enumerate(self.output_slices):
            xs = x * self.hut_in[s][slot] if self._scaled(s) else x
            b = None if bias is None else bias[start:start + width]
            if plain:
                outs.append(F.linear(xs, weight[start:start + width], b))
            else:  # no plain W0 (a quantised base): the whole GEMM per scaled slice, its rows kept
                if xs is x:
                    full = self._get_quant_method().apply(self.base_layer, x, bias) if full is None else full
                    outs.append(full[:, start:start + width])
                else:
                    outs.append(self._get_quant_method().apply(self.base_layer, xs, bias)[:, start:start + width])
            start += width
        return torch.cat(outs, dim=-1)


def _is_plain(weight: Optional[torch.Tensor], rows: int) -> bool:
    """Whether ``weight`` is an unquantised W0 with all ``rows`` of this shard."""
    return weight is not None and weight.ndim == 2 and weight.shape[0] == rows and weight.is_floating_point()


class HUTColumnParallelLinearWithLoRA(HUTLinearMixin, ColumnParallelLinearWithLoRA):
    """``ColumnParallelLinear`` (one module) with HUT adapters."""


class HUTMergedColumnParallelLinearWithLoRA(HUTLinearMixin, MergedColumnParallelLinearWithLoRA):
    """``gate_up_proj``-style fused layers (one slice per packed module) with HUT adapters."""


class HUTQKVParallelLinearWithLoRA(HUTLinearMixin, QKVParallelLinearWithLoRA):
    """A ``QKVParallelLinear`` that the checkpoint stores as one module, with HUT adapters."""


class HUTMergedQKVParallelLinearWithLoRA(HUTLinearMixin, MergedQKVParallelLinearWithLoRA):
    """``qkv_proj`` (q_proj | k_proj | v_proj) with HUT adapters."""


class HUTRowParallelLinearWithLoRA(HUTLinearMixin, RowParallelLinearWithLoRA):
    """``o_proj`` / ``down_proj`` with HUT adapters; the input scale follows the input shard."""


class HUTReplicatedLinearWithLoRA(HUTLinearMixin, ReplicatedLinearWithLoRA):
    """``ReplicatedLinear`` with HUT adapters."""


# vLLM's wrapper -> ours; plugin.py swaps them in place in vLLM's list, which keeps vLLM's matching order.
HUT_SUBCLASS: dict[type, type] = {
    ColumnParallelLinearWithLoRA: HUTColumnParallelLinearWithLoRA,
    MergedColumnParallelLinearWithLoRA: HUTMergedColumnParallelLinearWithLoRA,
    QKVParallelLinearWithLoRA: HUTQKVParallelLinearWithLoRA,
    MergedQKVParallelLinearWithLoRA: HUTMergedQKVParallelLinearWithLoRA,
    RowParallelLinearWithLoRA: HUTRowParallelLinearWithLoRA,
    ReplicatedLinearWithLoRA: HUTReplicatedLinearWithLoRA,
}
