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
