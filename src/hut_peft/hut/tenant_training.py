"""Training loops for many tenants' HUT adapters: all together (:func:`train_jointly`), or one ordinary run after
another in the same process (:func:`train_separately`, the baseline it must equal).

Both take the same tokenized rows and the same :class:`~hut_peft.hut.tenant_data.TenantPlan`, so each tenant sees
the same batches in the same order; with fp32 and no dropout each tenant's adapter is the same up to float rounding
(tests/test_tenants.py checks ≤ 1e-5). The separate loop is what transformers' Trainer does for one tenant
(torch AdamW, ``clip_grad_norm_``, ``get_scheduler``, the model's own causal-LM loss), without its per-run setup.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from peft import PeftModel

from .config import HUTConfig
from .tenant_data import TenantPlan, collate
from .tenants import TenantAdamW, TenantBank, causal_lm_tenant_loss

Rows = Sequence[Mapping[str, Sequence[int]]]  # tokenized rows: input_ids, labels
Callback = Optional[Callable[..., Any]]


@dataclass(frozen=True)
class TenantTrainingArgs:
    """The optimisation of every tenant's run (transformers' Trainer defaults, except the learning rate).

    Attributes:
        learning_rate: Peak learning rate; HUT's scale vectors want 10–40× LoRA's (DESIGN §5).
        weight_decay: AdamW's decoupled weight decay.
        max_grad_norm: Clip each tenant's gradient norm (None or 0: no clip).
        schedule: ``"linear"`` decay to 0 over each tenant's own steps, or ``"constant"``.
        warmup_steps: Linear warm-up steps of each tenant.
        betas: Adam's (β1, β2).
        eps: Adam's ε.
    """

    learning_rate: float = 5e-3
    weight_decay: float = 0.0
    max_grad_norm: Optional[float] = 1.0
    schedule: str = "linear"
    warmup_steps: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    @property
    def clip(self) -> Optional[float]:
        return self.max_grad_norm if self.max_grad_norm else None


def train_jointly(model: PeftModel, rows: Rows, plan: TenantPlan, args: TenantTrainingArgs, pad_token_id: int,
                  on_finished: Callback = None, on_step: Callback = None) -> dict[str, list[float]]:
    """Train every tenant of ``plan`` (adapters already loaded, e.g. by ``add_adapters``) in joint steps.

    Args:
        model: A ``PeftModel`` holding one HUT adapter per tenant, named after it.
        rows: Tokenized rows (``input_ids``, ``labels``), indexed by the plan.
        plan: The tenants' batches and joint steps (:func:`~hut_peft.hut.tenant_data.plan_tenants`).
        args: Optimisation, the same for every tenant.
        pad_token_id: Padding id for ``input_ids``.
        on_finished: Called as ``on_finished(tenant)`` right after a tenant's last step (save it there).
        on_step: Called as ``on_step(step_index, {tenant: loss})`` after every joint step.

    Returns:
        Tenant → its loss at each of its steps.
    """
    bank = TenantBank(model, list(plan.batches))
    opt = TenantAdamW(bank, lr=args.learning_rate, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay,
                      max_grad_norm=args.clip, total_steps=plan.total_steps(), schedule=args.schedule,
                      warmup_steps=args.warmup_steps)
    losses: dict[str, list[float]] = {t: [] for t in plan.batches}
    total = plan.total_steps()
    model.train()
    for index, step in enumerate(plan.steps):
        batch_rows = [plan.batches[t][j] for t, j in step]
        tenants = [t for (t, _), b in zip(step, batch_rows) for _ in b]
        batch = collate([rows[i] for b in batch_rows for i in b], pad_token_id)
        with bank.step(model, tenants) as joint:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss, per_tenant = causal_lm_tenant_loss(logits, batch["labels"], joint)
            loss.backward()
        opt.step(joint)
        values = dict(zip((bank.names[i] for i in joint.present.tolist()), per_tenant.tolist()))
        for t, value in values.items():
            losses[t].append(value)
        if on_step is not None:
            on_step(index, values)
        if on_finished is not None:
            for t, j in step:
                if j + 1 == total[t]:
                    on_finished(t)
    return losses


def train_separately(model: PeftModel, rows: Rows, plan: TenantPlan, args: TenantTrainingArgs, pad_token_id: int,
                     config: HUTConfig, on_finished: Callback = None, on_step: Callback = None,
                     keep: bool = False) -> dict[str, list[float]]:
    """Train the tenants of ``plan`` one ordinary run after another, on one loaded model.

    Each run: a fresh adapter from ``config`` (unless one of that name is loaded), torch's ``AdamW`` over its
    parameters, transformers' ``get_scheduler``, ``clip_grad_norm_``, the model's causal-LM loss, the tenant's batches
    in the plan's order. Unless ``keep``, the previous tenant's adapter is deleted once the next one is active
    (``on_finished`` has saved it), so memory holds one or two adapters.

    Returns:
        Tenant → its loss at each of its steps.
    """
    from transformers import get_scheduler

    losses: dict[str, list[float]] = {}
    previous: Optional[str] = None
    done = 0
    for tenant, batches in plan.batches.items():
        if tenant not in model.peft_config:
            model.add_adapter(tenant, copy.deepcopy(config))
        model.set_adapter(tenant)
        if previous is not None and not keep:
            model.delete_adapter(previous)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=args.learning_rate, betas=args.betas, eps=args.eps,
                                weight_decay=args.weight_decay)
        scheduler = get_scheduler(args.schedule, opt, num_warmup_steps=args.warmup_steps,
                                  num_training_steps=len(batches))
        model.train()
        losses[tenant] = []
        for b in batches:
            batch = collate([rows[i] for i in b], pad_token_id)
            loss = model(**batch).loss
            loss.backward()
            if args.clip is not None:
                torch.nn.utils.clip_grad_norm_(params, args.clip)
            opt.step()
            scheduler.step()
            opt.zero_grad(set_to_none=True)
            losses[tenant].append(loss.item())
            if on_step is not None:
                on_step(done, {tenant: losses[tenant][-1]})
            done += 1
        if on_finished is not None:
            on_finished(tenant)
        previous = tenant
    return losses
