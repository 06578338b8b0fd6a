"""TenantTrainer (hut/tenant_trainer.py): a `tenant` column through transformers' Trainer gives each tenant the
adapter an ordinary Trainer run on its rows alone gives, and logs each tenant's loss."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import get_peft_model
from torch.utils.data import SequentialSampler
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from hut_peft import HUTConfig, add_adapters
from hut_peft.hut.tenant_data import collate, plan_tenants, text_format, tokenize_row
from hut_peft.hut.tenant_trainer import TenantTrainer
from hut_peft.lab.models import TINY_LLAMA_WORDS, save_tiny_llama

TENANTS = {"alpha": 6, "beta": 3, "gamma": 9}
CONFIG = HUTConfig(r=1, target_modules=["q_proj", "v_proj"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def rows() -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    words = list(TINY_LLAMA_WORDS)

    def text(n: int) -> str:
        return " ".join(words[int(i)] for i in torch.randint(0, len(words), (n,), generator=gen))

    return [{"tenant": t, "prompt": text(3), "completion": text(int(torch.randint(2, 6, (1,), generator=gen)))}
            for t, n in TENANTS.items() for _ in range(n)]


def arguments(out: Path, **kw) -> TrainingArguments:
    return TrainingArguments(output_dir=str(out), per_device_train_batch_size=2, num_train_epochs=1, learning_rate=2e-2,
                             max_grad_norm=0.5, weight_decay=0.01, optim="adamw_torch", lr_scheduler_type="linear",
                             logging_steps=1, save_strategy="no", report_to=[], seed=4, use_cpu=True,
                             dataloader_num_workers=0, **kw)


class InOrder(Trainer):
    """An ordinary Trainer that takes its rows in the dataset's order (to give it the plan's batches)."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


def test_tenant_trainer_equals_an_ordinary_trainer_per_tenant(tmp_path: Path, tiny: str) -> None:
    data = rows()
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    names = list(TENANTS)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), copy.deepcopy(CONFIG), adapter_name=names[0])
    add_adapters(model, names[1:], CONFIG)
    trainer = TenantTrainer(model, arguments(tmp_path / "joint"), Dataset.from_list(data), rows_per_step=5,
                            processing_class=tokenizer, max_length=32)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if any(k.startswith("tenant_loss/") for k in entry)]
    assert {k for entry in logged for k in entry if k.startswith("tenant_loss/")} == {f"tenant_loss/{t}" for t in names}

    plan = plan_tenants([r["tenant"] for r in data], batch_size=2, epochs=1, seed=4, rows_per_step=5)
    for tenant in names:
        order = [i for batch in plan.batches[tenant] for i in batch]
        alone = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), copy.deepcopy(CONFIG), adapter_name=tenant)
        own = Dataset.from_list([data[i] for i in order]).remove_columns("tenant")
        fmt = text_format(own.column_names)
        own = own.map(lambda r, fmt=fmt: tokenize_row(r, tokenizer, fmt, 32), remove_columns=own.column_names)
        ordinary = InOrder(alone, arguments(tmp_path / tenant), train_dataset=own, processing_class=tokenizer,
                           data_collator=lambda batch: collate(batch, tokenizer.pad_token_id))
        ordinary.train()
        got = {k: v for k, v in model.state_dict().items() if k.endswith(f".{tenant}")}
        want = {k: v for k, v in alone.state_dict().items() if k.endswith(f".{tenant}")}
        assert got.keys() == want.keys() and got
        worst = max((got[k] - want[k]).abs().max().item() for k in got)
        assert worst <= 1e-5
        assert max((v - (0.0 if "beta" in k else 1.0)).abs().max().item() for k, v in got.items()) > 1e-3


def test_tenant_trainer_refuses_what_it_cannot_do_exactly(tmp_path: Path, tiny: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), copy.deepcopy(CONFIG), adapter_name="alpha")
    data = Dataset.from_list(rows())
    with pytest.raises(ValueError, match="No adapter for tenant"):
        TenantTrainer(model, arguments(tmp_path), data, processing_class=tokenizer)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=1"):
        TenantTrainer(model, arguments(tmp_path, gradient_accumulation_steps=2), data, processing_class=tokenizer)
    with pytest.raises(ValueError, match="'tenant' column"):
        TenantTrainer(model, arguments(tmp_path), data.remove_columns("tenant"), processing_class=tokenizer)
