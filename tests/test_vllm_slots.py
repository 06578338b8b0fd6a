"""All of vLLM's adapter slots taken, base-model requests in the same batch: they must stay the base model.

vLLM 0.32's CPU LoRA ops index the adapter stacks with each token's raw slot, and a token without an adapter
has slot -1, which wraps to the last slot: with every slot holding a LoRA, base-model rows get that LoRA
(measured with the plugin off: 3 of 3 base rows wrong; docs/serving.md). The HUT wrappers keep such rows as they
are, so a server mixing HUT, LoRA and base-model requests answers each correctly. Two slots, so they fill up.
"""

from __future__ import annotations

import pytest
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest

from vllm_fixtures import PROMPTS, adapted_model, greedy_reference, make_served_models


def test_base_rows_stay_base_when_every_slot_holds_a_lora(tmp_path_factory: pytest.TempPathFactory,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path_factory.mktemp("vllm-slots")
    folders = make_served_models(root)
    adapters = {**folders["adapters"], "lora2": root / "lora2"}
    adapted_model(folders["base"], "lora", seed=21, target_modules=["q_proj", "v_proj", "down_proj"], r=8,
             lora_alpha=16).save_pretrained(adapters["lora2"])
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    llm = LLM(model=str(folders["base"]), enable_lora=True, dtype="float32", max_model_len=128, max_loras=2,
              max_lora_rank=8, max_num_seqs=16, seed=0)
    ids = {name: k + 1 for k, name in enumerate(adapters)}
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    for batch in ([None, "lora", "lora2", None, None], [None, "attn", "lora", None]):  # two LoRAs; HUT beside a LoRA
        jobs = [(name, k % len(PROMPTS)) for k, name in enumerate(batch)]
        outs = llm.generate([{"prompt_token_ids": PROMPTS[i]} for _, i in jobs], params, use_tqdm=False,
                            lora_request=[None if n is None else LoRARequest(n, ids[n], str(adapters[n])) for n, _ in jobs])
        for (name, i), out in zip(jobs, outs):
            adapter = None if name is None else adapters[name]
            assert list(out.outputs[0].token_ids) == greedy_reference(folders["base"], adapter, PROMPTS[i], 8)[0], (batch, name)
    del llm
