"""transformers' ``Trainer`` with a ``tenant`` column: one HUT adapter per tenant, trained in joint steps.

``TenantTrainer`` is a ``Trainer`` whose train set has a ``tenant`` column next to TRL's formats (``text``, or
``prompt`` + ``completion``; tokenized here with the ``processing_class``) or already tokenized rows (``input_ids``,
``labels``). Each step packs one batch of several tenants (``per_device_train_batch_size`` rows each, at most
``rows_per_step`` rows); the loss is each tenant's own mean, summed; :class:`~hut_peft.hut.tenants.TenantAdamW`
updates each tenant with its own step count, schedule (``lr_scheduler_type`` ``linear`` or ``constant``, over the
tenant's own steps) and clip (``max_grad_norm``, per tenant). The logs gain ``tenant_loss/<tenant>``: each tenant's
mean loss since the last log. So each tenant's adapter equals an ordinary ``Trainer`` run on its rows alone, given
the same batches (docs/tenants.md).

Supported: one process, ``gradient_accumulation_steps=1``, epochs (not ``max_steps``), AdamW (the Trainer's
``optim`` is not used). TRL's ``SFTTrainer`` is not subclassed: it owns the collator and the loss (its completion
masks, padding-free packing and token-accuracy metrics), so a tenant version would copy most of it; the formats are
the same here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer

from .tenant_data import TENANT_COLUMN, collate, plan_tenants, text_format, tokenize_row
from .tenants import SCHEDULES, TenantAdamW, TenantBank, causal_lm_tenant_loss


class JointBatchSampler(Sampler[list[int]]):
    """Joint steps of one epoch (:func:`~hut_peft.hut.tenant_data.plan_tenants` with ``first_epoch=epoch``)."""

    def __init__(self, tenants: Sequence[str], batch_size: int, rows_per_step: Optional[int], seed: int) -> None:
        self.tenants, self.batch_size, self.rows_per_step, self.seed = list(tenants), batch_size, rows_per_step, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self, epoch: int):
        return plan_tenants(self.tenants, self.batch_size, 1, self.seed, self.rows_per_step, first_epoch=epoch)

    def __iter__(self):
        plan = self.plan(self.epoch)
        for step in plan.steps:
            yield [i for t, j in step for i in plan.batches[t][j]]

    def __len__(self) -> int:
        return len(self.plan(0).steps)  # every epoch packs the same batch sizes, so the same number of steps


class _TenantOptimizer(torch.optim.Optimizer):
    """What the Trainer calls ``optimizer``: ``step()`` runs :class:`TenantAdamW` on the trainer's last joint step.
    Its one parameter group holds the bank (for the Trainer's scheduler and logging); learning rates are per tenant."""

    def __init__(self, trainer: TenantTrainer, inner: TenantAdamW) -> None:
        super().__init__([inner.bank.data], {"lr": inner.lr})
        self.trainer, self.inner = trainer, inner

    def step(self, closure: Any = None) -> None:
        joint = self.trainer._joint
        if joint is not None:
            self.trainer._joint = None
            self.inner.step(joint)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: each joint step's leaves are new."""

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict)


class TenantTrainer(Trainer):
    """A ``Trainer`` that trains one HUT adapter per tenant of its train set, jointly (module docstring).

    Args:
        model: A ``PeftModel`` holding one HUT adapter per tenant, named after it (``hut_peft.add_adapters``).
        args: ``TrainingArguments``; ``per_device_train_batch_size`` is each tenant's batch size.
        train_dataset: Rows with ``tenant`` and ``text`` / ``prompt`` + ``completion``, or ``input_ids`` + ``labels``.
        rows_per_step: At most this many rows per joint step (default: 8 tenants' batches).
        max_length: Tokens per row when tokenizing here.
        **kwargs: Passed to ``Trainer`` (``processing_class`` is needed to tokenize text).

    Raises:
        ValueError: No ``tenant`` column, a tenant without an adapter, or an unsupported setting
            (gradient accumulation, ``max_steps``, a schedule other than linear or constant).
    """

    def __init__(self, model: Any, args: Any, train_dataset: Any, rows_per_step: Optional[int] = None,
                 max_length: int = 1024, **kwargs: Any) -> None:
        if args.gradient_accumulation_steps != 1:
            raise ValueError("TenantTrainer needs gradient_accumulation_steps=1: raise rows_per_step for larger steps.")
        if args.max_steps and args.max_steps > 0:
            raise ValueError("TenantTrainer trains each tenant for num_train_epochs over its own rows; unset max_steps.")
        schedule = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        if schedule not in SCHEDULES:
            raise ValueError(f"TenantTrainer supports lr_scheduler_type {' or '.join(SCHEDULES)}, got {schedule!r}.")
        if int(args.num_train_epochs) != args.num_train_epochs:
            raise ValueError(f"TenantTrainer needs a whole num_train_epochs, got {args.num_train_epochs}.")
        columns = list(train_dataset.column_names if hasattr(train_dataset, "column_names") else train_dataset[0])
        if TENANT_COLUMN not in columns:
            raise ValueError(f"TenantTrainer's train_dataset needs a '{TENANT_COLUMN}' column, got {sorted(columns)}.")
        if "input_ids" not in columns:
            train_dataset = self._tokenize(train_dataset, kwargs.get("processing_class"), max_length)
        eval_dataset = kwargs.get("eval_dataset")
        if eval_dataset is not None and "input_ids" not in list(eval_dataset.column_names):
            kwargs["eval_dataset"] = self._tokenize(eval_dataset, kwargs.get("processing_class"), max_length)
        self.tenants = [str(t) for t in train_dataset[TENANT_COLUMN]]
        missing = sorted(set(self.tenants) - set(model.peft_config))
        if missing:
            raise ValueError(f"No adapter for tenant(s) {', '.join(missing[:5])}: create them first, e.g. "
                             "hut_peft.add_adapters(model, tenants, HUTConfig(...)).")
        self.rows_per_step = rows_per_step
        self._joint = None
        self._tenant_logs: dict[str, list[float]] = {}
        self.bank: Optional[TenantBank] = None
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)

    @staticmethod
    def _tokenize(dataset: Any, tokenizer: Any, max_length: int) -> Any:
        if tokenizer is None:
            raise ValueError("TenantTrainer needs processing_class (a tokenizer) to tokenize text rows.")
        fmt = text_format(list(dataset.column_names))
        return dataset.map(lambda row: tokenize_row(row, tokenizer, fmt, max_length))

    def _pad_id(self) -> int:
        tokenizer = self.processing_class
        pad = getattr(tokenizer, "pad_token_id", None)
        return pad if pad is not None else getattr(tokenizer, "eos_token_id", 0) or 0

    def _collate(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(rows, self._pad_id())
        batch["tenants"] = [str(r[TENANT_COLUMN]) for r in rows]
        return batch

    def get_train_dataloader(self) -> DataLoader:
        sampler = JointBatchSampler(self.tenants, self.args.per_device_train_batch_size, self.rows_per_step, self.args.seed)
        return DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self._collate)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        """Rows in order, ``per_device_eval_batch_size`` at a time, each with its tenant's adapter."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        return DataLoader(dataset, batch_size=self.args.per_device_eval_batch_size, collate_fn=self._collate)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            names = list(dict.fromkeys(self.tenants))
            plan = JointBatchSampler(self.tenants, self.args.per_device_train_batch_size, self.rows_per_step,
                                     self.args.seed).plan(0)
            epochs = int(self.args.num_train_epochs)
            self.bank = TenantBank(self.model, names)
            schedule = str(getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type))
            inner = TenantAdamW(self.bank, lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2),
                                eps=self.args.adam_epsilon, weight_decay=self.args.weight_decay,
                                max_grad_norm=self.args.max_grad_norm or None,
                                total_steps={t: epochs * n for t, n in plan.total_steps().items()}, schedule=schedule,
                                warmup_steps=self._warmup_steps())
            self.optimizer = _TenantOptimizer(self, inner)
        return self.optimizer

    def _warmup_steps(self) -> int:
        """``warmup_steps`` as a number of each tenant's steps (a ratio would need each tenant's total: refused)."""
        warmup = getattr(self.args, "warmup_steps", 0) or 0
        if getattr(self.args, "warmup_ratio", 0) or warmup != int(warmup):
            raise ValueError(f"TenantTrainer takes warmup_steps as a whole number of each tenant's steps, got "
                             f"warmup_steps={warmup}, warmup_ratio={getattr(self.args, 'warmup_ratio', 0)}.")
        return int(warmup)

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        """A constant one: each tenant's schedule lives in the optimizer (over that tenant's own steps)."""
        if self.lr_scheduler is None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, lambda _: 1.0)
        return self.lr_scheduler

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Each tenant's mean loss over its own labelled tokens, summed over the tenants of the step."""
        tenants = inputs.pop("tenants")
        labels = inputs.pop("labels")
        bank = self.bank or TenantBank(model, list(dict.fromkeys(self.tenants)))
        self.bank = bank
        with bank.step(model, tenants) as joint:
            outputs = model(**inputs)
            loss, per_tenant = causal_lm_tenant_loss(outputs.logits, labels, joint)
        if model.training:
            self._joint = joint
            for slot, value in zip(joint.present.tolist(), per_tenant.tolist()):
                self._tenant_logs.setdefault(bank.names[slot], []).append(value)
        return (loss, outputs) if return_outputs else loss

    def _clip_grad_norm(self, model: Any) -> None:
        """Clipping is per tenant, inside the optimizer step (``max_grad_norm``); a global clip would mix tenants."""
        return None

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> None:
        return None  # the Trainer's norm over every model parameter: not a per-tenant quantity, and O(K) to compute

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._tenant_logs:
            for tenant, values in self._tenant_logs.items():
                logs[f"tenant_loss/{tenant}"] = sum(values) / len(values)
            self._tenant_logs = {}
        super().log(logs, *args, **kwargs)
