"""Data for many tenants trained together: rows with a ``tenant`` column, each tenant's batches, joint steps.

A tenant's run is defined by its sequence of batches, and that sequence depends only on the tenant's own rows, the
batch size, the number of epochs and the seed (never on the other tenants): epoch ``e`` shuffles the tenant's rows
with a generator seeded from ``(seed, tenant, e)``. A joint step then packs the next batch of several tenants (at
most one batch per tenant, ``rows_per_step`` rows at most), round-robin, so a joint run and separate runs see each
tenant's batches in the same order, and adding or removing another tenant changes nothing for this one.

Rows follow TRL's dataset formats: ``text`` (language modelling: every token is learnt), or ``prompt`` +
``completion`` (only the completion's tokens are learnt, TRL's default ``completion_only_loss``), plus ``tenant``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .tenants import IGNORE_INDEX

TENANT_COLUMN = "tenant"
FORMATS = (("text",), ("prompt", "completion"))


def text_format(columns: Sequence[str]) -> tuple[str, ...]:
    """The TRL format that ``columns`` hold: ``("text",)`` or ``("prompt", "completion")``.

    Raises:
        ValueError: Neither format's columns are all there.
    """
    for fmt in (("prompt", "completion"), ("text",)):
        if all(c in columns for c in fmt):
            return fmt
    raise ValueError(
        f"The data has columns {sorted(columns)}, but needs 'text', or 'prompt' and 'completion' (TRL's formats), "
        f"plus '{TENANT_COLUMN}'."
    )


def tokenize_row(row: Mapping[str, Any], tokenizer: Any, fmt: tuple[str, ...], max_length: int) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (-100 where no loss) of one row, cut to ``max_length`` tokens.

    As TRL's SFTTrainer: the end-of-sequence token is appended when the tokenizer has one and the text does not
    already end with it; with a prompt and a completion only the completion (and that token) is learnt.
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    if fmt == ("text",):
        prompt_ids, ids = [], tokenizer(row["text"], add_special_tokens=True)["input_ids"]
    else:
        prompt_ids = tokenizer(row["prompt"], add_special_tokens=True)["input_ids"]
        ids = prompt_ids + tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
    if eos is not None and (not ids or ids[-1] != eos):
        ids = ids + [eos]
    labels = [IGNORE_INDEX] * len(prompt_ids) + ids[len(prompt_ids):]
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def collate(examples: Sequence[Mapping[str, Sequence[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids`` (with ``pad_token_id``) and ``labels`` (with -100) to the longest row; with right
    padding and causal attention a row's outputs do not depend on how much padding follows it."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"], dtype=torch.long)
        labels[i, :n] = torch.tensor(e["labels"], dtype=torch.long)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _epoch_generator(seed: int, tenant: str, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{tenant}/{epoch}".encode()))


@dataclass(frozen=True)
class TenantPlan:
    """Each tenant's batches and the joint steps that pack them.

    Attributes:
        batches: Tenant → its batches in training order, each a list of row indices (into the dataset).
        steps: Joint steps, each a list of ``(tenant, batch number)`` with at most one batch per tenant.
    """

    batches: dict[str, list[list[int]]]
    steps: list[list[tuple[str, int]]]

    def total_steps(self) -> dict[str, int]:
        """Tenant → its number of optimiser steps (its own run's ``max_steps``)."""
        return {t: len(b) for t, b in self.batches.items()}

    def without(self, done: Sequence[str]) -> TenantPlan:
        """The plan for the other tenants (resuming a run whose tenants ``done`` are saved): their batches are
        unchanged, so they train exactly as in the full run."""
        skip = set(done)
        batches = {t: b for t, b in self.batches.items() if t not in skip}
        return TenantPlan(batches, [s for s in ([(t, j) for t, j in step if t not in skip] for step in self.steps) if s])


def plan_tenants(tenants: Sequence[str], batch_size: int, epochs: int = 1, seed: int = 0,
                 rows_per_step: Optional[int] = None, first_epoch: int = 0) -> TenantPlan:
    """Batches of every tenant, and joint steps of at most ``rows_per_step`` rows (default: ``8 × batch_size``).

    Args:
        tenants: The tenant of each row.
        batch_size: Rows per tenant batch (a tenant's last batch of an epoch may be smaller).
        epochs: Passes over each tenant's rows.
        seed: Shuffling seed (with the tenant's name and the epoch).
        rows_per_step: Cap on the rows of a joint step; a step always takes at least one batch.
        first_epoch: Number of the first epoch planned (a Trainer plans one epoch at a time: epoch ``e`` alone
            gives the same batches as epoch ``e`` of a plan of several).

    Raises:
        ValueError: ``batch_size``, ``epochs`` or ``rows_per_step`` below 1, or no rows.
    """
    for name, value in (("batch_size", batch_size), ("epochs", epochs), ("rows_per_step", rows_per_step or 1)):
        if value < 1:
            raise ValueError(f"plan_tenants: {name} must be >= 1, got {value}.")
    if not tenants:
        raise ValueError("plan_tenants: no rows.")
    rows: dict[str, list[int]] = {}
    for i, t in enumerate(tenants):
        rows.setdefault(t, []).append(i)
    batches: dict[str, list[list[int]]] = {}
    for t, idx in rows.items():
        out = []
        for epoch in range(first_epoch, first_epoch + epochs):
            order = torch.randperm(len(idx), generator=_epoch_generator(seed, t, epoch)).tolist()
            shuffled = [idx[j] for j in order]
            out += [shuffled[j:j + batch_size] for j in range(0, len(shuffled), batch_size)]
        batches[t] = out
    cap = rows_per_step or 8 * batch_size
    names, nxt = list(batches), {t: 0 for t in batches}
    active, cursor, steps = list(names), 0, []
    while active:
        step, used, taken = [], 0, 0
        while taken < len(active):
            t = active[(cursor + taken) % len(active)]
            size = len(batches[t][nxt[t]])
            if step and used + size > cap:
                break
            step.append((t, nxt[t]))
            used += size
            taken += 1
        for t, j in step:
            nxt[t] = j + 1
        finished = {t for t, _ in step if nxt[t] == len(batches[t])}
        steps.append(step)
        start = (cursor + taken) % len(active)
        rotated = active[start:] + active[:start]  # continue the round from where this step stopped
        active, cursor = [t for t in rotated if t not in finished], 0
    return TenantPlan(batches, steps)
