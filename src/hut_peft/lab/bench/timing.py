"""Timing shared by every section of `hut-peft bench`: a fixed seed, and medians of interleaved repetitions.

Interleaving (each repetition runs every variant once, round-robin, after untimed warm-up rounds) makes drifts in
machine load hit all variants alike, so the ratios printed from one run hold even on a busy machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, Optional

import torch
from torch import nn

SEED = 0
MIB = 2**20


def sync(device: Optional[torch.device]) -> None:
    """Wait for queued CUDA work, so a timer reads the work's end and not its launch."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(fns: dict[str, Callable[[], Any]], reps: int, warmup: int,
                        device: Optional[torch.device] = None) -> dict[str, float]:
    """Median seconds per call of each function, run round-robin (warm-up rounds untimed)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


# The training step that the sections time (here, so that every bench module can share it).
def training_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean square of the first half of the features: a cheap loss with real gradients. (The mean square of all
    features is constant under a final LayerNorm at init, so its gradients are rounding noise.)"""
    out = model(**batch)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return hidden[..., : hidden.shape[-1] // 2].float().pow(2).mean()


def training_step(model: nn.Module, batch: dict[str, torch.Tensor], lr: float = 1e-5,
             forward: Optional[Callable[..., Any]] = None) -> Callable[[], None]:
    """One training step (forward, backward, AdamW) as a closure; the frozen floor has no optimiser step.
    ``forward`` replaces ``model`` for the forward pass (a ``torch.compile`` of it)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr) if params else None
    model.train()

    def step() -> None:
        training_loss(model if forward is None else forward, batch).backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    step.optimizer = opt  # type: ignore[attr-defined]  # for memory accounting (llm.py)
    return step
