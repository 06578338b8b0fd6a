"""TRL: SFTTrainer with a HUTConfig trains, saves, reloads (same process and a fresh one) and merges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel

from hut_peft import HUTConfig
from hut_peft.lab.models import save_tiny_llama

trl = pytest.importorskip("trl", reason="trl is in the dev extras: pip install trl")

TEXTS = ["the movie was very good", "the food was awful and the service dull", "a great family friendly pub",
         "the story is not fun", "cheap coffee shop near the river", "the actor was great"] * 2
PROBE = [[1, 5, 9, 12, 20, 31, 2]]  # token ids inside the tiny vocabulary


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A tiny Llama after 3 SFT steps with HUT on q and v, its adapter saved; the model stays in memory."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("trl")
    model_dir = save_tiny_llama(root / "model")
    args = trl.SFTConfig(output_dir=str(root / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=5e-2,
                         max_length=32, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                         bf16=False)  # TRL turns bf16 autocast on where the CPU has it; fp32 keeps comparisons exact
    trainer = trl.SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=Dataset.from_dict({"text": TEXTS}),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=HUTConfig(r=8, target_modules=["q_proj", "v_proj"], shift=False),
    )
    trainer.train()
    trainer.save_model(str(root / "adapter"))
    return trainer, model_dir, root / "adapter"


def _logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(PROBE)).logits


def test_sft_trains_only_hut_parameters(sft_run):
    trainer, _, adapter = sft_run
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 3 and all(loss == loss for loss in losses)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("hut_" in n for n in trainable)
    moved = [p for n, p in trainer.model.named_parameters() if "hut_gamma" in n]
    assert any((p - 1).abs().max() > 1e-3 for p in moved)  # the adapter left the identity
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["peft_type"] == "HUT" and saved["r"] == 8


def test_reload_in_the_same_process_and_merge(sft_run):
    from transformers import AutoModelForCausalLM

    trainer, model_dir, adapter = sft_run
    expected = _logits(trainer.model)
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter)
    torch.testing.assert_close(_logits(reloaded), expected, rtol=0, atol=0)
    assert (_logits(AutoModelForCausalLM.from_pretrained(model_dir)) - expected).abs().max() > 1e-4
    merged = reloaded.merge_and_unload()
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert (_logits(merged) - expected).abs().max() <= 1e-5


def test_reload_in_a_fresh_process(sft_run, tmp_path):
    trainer, model_dir, adapter = sft_run
    expected = _logits(trainer.model)
    script = textwrap.dedent(f"""
        import torch, hut_peft
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(model_dir)!r}), {str(adapter)!r})
        model.eval()
        with torch.no_grad():
            torch.save(model(input_ids=torch.tensor({PROBE!r})).logits, {str(tmp_path / "logits.pt")!r})
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=0)
