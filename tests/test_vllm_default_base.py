"""One base for training and serving: an adapter trained on the default model meets the same weights in `hut-peft serve`.

The default of both is the embedded SmolLM2: training loads it with ``resolve_model("smollm2")`` (the GGUF,
dequantised to fp32), and ``hut-peft serve`` serves the folder ``export_smollm2`` writes. The folder holds those
same fp32 weights, so in fp32 vLLM's greedy tokens equal the training model's (a bf16 copy, as before, matched
245 of 320). Slow: the real 135M model in transformers and in vLLM.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow
PROMPTS = ["The capital of France is", "A good name for a coffee shop is", "List three rivers:", "2 + 2 ="]
NEW_TOKENS = 12


def test_an_adapter_trained_on_the_default_model_serves_on_the_same_weights(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hut_peft import HUTConfig
    from hut_peft.lab import serve
    from hut_peft.lab.models import DEFAULT_DECODER, resolve_model

    source = resolve_model(DEFAULT_DECODER)  # as docs/workflows.md trains on it
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **source.kwargs())
    model = get_peft_model(model, HUTConfig(r=4, target_modules=["q_proj", "v_proj"], shift=False))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    batch = tokenizer(["Wales has many rivers, the Taff and the Usk among them."] * 2, return_tensors="pt")
    for _ in range(3):  # a few real steps, so the adapter is not the identity
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(tmp_path / "adapters" / "tenant")
    model.eval()
    ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    trained = []
    with torch.no_grad():
        for prompt in ids:  # greedy, every step to the full length (as vLLM's ignore_eos)
            tokens = list(prompt)
            for _ in range(NEW_TOKENS):
                tokens.append(int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
            trained.append(tokens[len(prompt):])

    monkeypatch.setattr(serve, "CACHE", tmp_path / "cache")
    folder = serve.export_smollm2()  # what `hut-peft serve` serves by default
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(model=str(folder), enable_lora=True, dtype="float32", max_model_len=128, max_loras=1, seed=0)
    outs = llm.generate([{"prompt_token_ids": p} for p in ids],
                        SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True), use_tqdm=False,
                        lora_request=LoRARequest("tenant", 1, str(tmp_path / "adapters" / "tenant")))
    served = [list(o.outputs[0].token_ids) for o in outs]
    assert served == trained
