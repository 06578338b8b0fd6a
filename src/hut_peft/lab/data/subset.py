"""The seeded subsets every loader offers (``max_samples``, ``seed``), drawn one way so the recipes agree."""

from __future__ import annotations

import random
from typing import Any


def check_max_samples(max_samples: Any) -> None:
    """Raises ValueError unless ``max_samples`` is None or a positive integer (``bool`` is not one)."""
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}.")


def seeded_subset(ds: Any, max_samples: int | None, seed: int) -> Any:
    """``max_samples`` rows of a ``datasets.Dataset`` drawn by ``random.Random(seed).sample``, kept in their order;
    ``ds`` itself when ``max_samples`` is None or not below its size."""
    if max_samples is not None and max_samples < len(ds):
        return ds.select(sorted(random.Random(seed).sample(range(len(ds)), max_samples)))
    return ds
