"""Prototypes for HUT's saved activations: what would cut the memory HUT keeps for the backward.

Why: ``h = y ⊙ C + S`` needs ``Σ_tokens ∂L/∂h ⊙ y`` for the gradient of ``C``, so autograd's ``addcmul`` keeps
the pre-scale output ``y`` (N×k) alive for every adapted matrix; LoRA keeps only ``x A`` (N×r). Two fixes are
measured against the committed layer, LoRA and the frozen floor, on the same model and batch:

- ``hut_save_h``: the scale-and-shift as an ``autograd.Function`` that saves the output ``h`` and recovers
  ``y = (h − S) / C`` in the backward. It saves nothing unless the next operation saves ``h``'s own storage
  (attention saving its query and value inputs as views).
- ``hut_recompute``: the layer under non-reentrant ``torch.utils.checkpoint``: it saves only the input ``x``
  (already saved for the other adapted projection of the same input) and recomputes ``y = base(x ⊙ a)`` in
  the backward: one extra forward matmul per adapted matrix.

Both patch ``hut_peft.hut.Linear.forward`` at run time only. The second became the opt-in
``HUTConfig(recompute_base_output=True)``, which ``hut-peft bench`` measures (rows ``hut-recompute``). The script
checks that each computes the committed layer's loss and gradients (eval mode, no dropout), then reports the
saved-tensor bytes (train mode) and the median step time of interleaved repetitions.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/hut_save_output.py --model minilm|roberta-large-slice|smollm2``.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from hut_peft.hut import Linear
from hut_peft.lab.bench.run import _loss, _prepare, _step_fn, load_model, saved_tensor_bytes
from hut_peft.lab.bench.timing import interleaved_medians


class ScaleShiftSavingOutput(torch.autograd.Function):
    """``h = y ⊙ c + s`` over the last dimension; saves ``h``, ``c``, ``s`` (not ``y``)."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = torch.addcmul(s, y, c)
        ctx.save_for_backward(h, c, s)
        return h

    @staticmethod
    def backward(ctx: Any, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, c, s = ctx.saved_tensors
        flat = dh.reshape(-1, dh.shape[-1])
        y = (h.reshape(-1, h.shape[-1]) - s) / c  # exact up to rounding where |c| is not tiny
        return dh * c, (flat * y).sum(0), flat.sum(0)


def _forward_saving_output(self: Linear, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The committed ordinary-layer path (``y = base(x ⊙ a)``) with the Function above for the scale-and-shift."""
    active = [name for name in self.active_adapters if name in self.hut_A]
    a, c, s = self._composed(active, self._base_bias())
    y = self.base_layer(x * a[0].to(x.dtype), *args, **kwargs)
    return ScaleShiftSavingOutput.apply(y, c[0].to(y.dtype), s[0].to(y.dtype))


def _forward_recomputing(self: Linear, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The committed forward under non-reentrant checkpointing: saves only ``x`` (which the other adapted
    projection of the same input saves anyway) and recomputes ``y = base(x ⊙ a)`` in the backward."""
    return checkpoint(lambda t: Linear.forward(self, t, *args, **kwargs), x, use_reentrant=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm",
                        choices=["minilm", "roberta-large-slice", "smollm2", "tiny-bert", "tiny-llama"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, batch, label = load_model(args.model, torch.device("cpu"))
    models = {m: _prepare(m, base) for m in ("frozen", "hut", "lora")}
    for key, forward in (("hut_save_h", _forward_saving_output), ("hut_recompute", _forward_recomputing)):
        models[key] = copy.deepcopy(models["hut"])
        for module in models[key].modules():
            if isinstance(module, Linear):
                module.forward = forward.__get__(module)
    # the prototype computes the same loss and gradients as the committed layer
    torch.manual_seed(1)
    variants = ("hut", "hut_save_h", "hut_recompute")
    with torch.no_grad():
        for params in zip(*(models[k].parameters() for k in variants)):
            if params[0].requires_grad:
                params[0].add_(torch.randn_like(params[0]) * 0.02)
                for q in params[1:]:
                    q.copy_(params[0])
    losses = {}
    for key in variants:
        model = models[key].eval()  # no dropout: the two must agree to rounding
        loss = _loss(model, batch)
        loss.backward()
        losses[key] = (loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad])
        model.zero_grad(set_to_none=True)
    max_diff = {k: max((g1 - g2).abs().max().item() / (g1.abs().max().item() or 1.0)
                       for g1, g2 in zip(losses["hut"][1], losses[k][1])) for k in variants[1:]}
    saved = {k: saved_tensor_bytes(m, batch) / 2**20 for k, m in models.items()}
    times = interleaved_medians({k: _step_fn(m, batch) for k, m in models.items()}, args.reps, 2)
    print(json.dumps({"model": label, "threads": args.threads, "saved_mib": saved, "step_s": times,
                      "step_over_frozen": {k: v / times["frozen"] for k, v in times.items()},
                      "loss_equal": {k: losses["hut"][0] == losses[k][0] for k in variants[1:]},
                      "max_relative_grad_difference": max_diff}, indent=2))


if __name__ == "__main__":
    main()
