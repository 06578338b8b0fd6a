"""HUT adapters served by vLLM (hut_peft.serving): the real engine, fp32 on CPU, against hut-peft + transformers.

One engine for the module (about 20-30 s to start on 2 cores). The reference is a plain greedy loop over
transformers' logits with the adapter loaded by peft, so "equal" means vLLM's continuous batches, slots, fused
``qkv_proj``/``gate_up_proj`` and its LoRA plumbing computed what hut-peft computes, token for token.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from vllm import LLM, SamplingParams  # the serve-cpu extra, installed by `make setup`
from vllm.lora.request import LoRARequest

from hut_peft.serving.vectors import CONFIG_NAME, WEIGHTS_NAME
from vllm_fixtures import PROMPTS, greedy_reference, make_served_models

NEW_TOKENS = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("vllm")
    folders = make_served_models(root)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # for llm.apply_model (a function to the worker)
    llm = LLM(model=str(folders["base"]), enable_lora=True, dtype="float32", max_model_len=128, max_loras=6,
              max_lora_rank=8, max_num_seqs=32, seed=0)
    ids = {name: i + 1 for i, name in enumerate(folders["adapters"])}
    yield {"llm": llm, "folders": folders, "ids": ids, "root": root}
    del llm


def request(served: dict, name: str | None) -> LoRARequest | None:
    if name is None:
        return None
    return LoRARequest(name, served["ids"][name], str(served["folders"]["adapters"][name]))


def generate(served: dict, jobs: list[tuple[str | None, int]]) -> list[tuple[list[int], list[float]]]:
    """One ``generate`` call (one continuous batch) for ``(adapter, prompt index)`` jobs: tokens and their logprobs."""
    params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True, logprobs=0)
    outs = served["llm"].generate([{"prompt_token_ids": PROMPTS[i]} for _, i in jobs], params,
                                  lora_request=[request(served, name) for name, _ in jobs], use_tqdm=False)
    results = []
    for out in outs:
        tokens = list(out.outputs[0].token_ids)
        logprobs = [step[token].logprob for step, token in zip(out.outputs[0].logprobs, tokens)]
        results.append((tokens, logprobs))
    return results


def check_against_reference(served: dict, jobs: list[tuple[str | None, int]]) -> None:
    for (name, i), (tokens, logprobs) in zip(jobs, generate(served, jobs)):
        folder = None if name is None else served["folders"]["adapters"][name]
        ref_tokens, ref_logprobs = greedy_reference(served["folders"]["base"], folder, PROMPTS[i], NEW_TOKENS)
        assert tokens == ref_tokens, f"adapter {name}, prompt {i}"
        assert max(abs(a - b) for a, b in zip(logprobs, ref_logprobs)) < 1e-4, f"adapter {name}, prompt {i}"


def test_mixed_batch_equals_transformers(served: dict) -> None:
    names = [None, *served["folders"]["adapters"]]
    jobs = [(name, i) for i in range(len(PROMPTS)) for name in names]  # every row its own adapter, interleaved
    check_against_reference(served, jobs)
    by_adapter = {name: [t for (n, _), (t, _) in zip(jobs, generate(served, jobs)) if n == name] for name in names}
    for name in served["folders"]["adapters"]:  # each adapter changes what the model says
        assert by_adapter[name] != by_adapter[None], name


@pytest.mark.parametrize("name", ["attn", "all", "rows", "lora"])
def test_each_adapter_alone_equals_transformers(served: dict, name: str) -> None:
    check_against_reference(served, [(name, i) for i in range(len(PROMPTS))])


def test_more_adapters_than_slots_wait_and_still_match(served: dict, tmp_path: Path) -> None:
    """Eight HUT adapters through six slots: vLLM's scheduler queues the rest and its LRU swaps them in."""
    llm, folders = served["llm"], served["folders"]
    names = [f"copy{k}" for k in range(8)]
    source = folders["adapters"]["all"]
    for _k, name in enumerate(names):
        (tmp_path / name).mkdir()
        for f in (CONFIG_NAME, WEIGHTS_NAME):
            (tmp_path / name / f).write_bytes((source / f).read_bytes())
    params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True)
    outs = llm.generate([{"prompt_token_ids": PROMPTS[0]}] * len(names), params,
                        lora_request=[LoRARequest(n, 100 + k, str(tmp_path / n)) for k, n in enumerate(names)],
                        use_tqdm=False)
    ref_tokens, _ = greedy_reference(folders["base"], source, PROMPTS[0], NEW_TOKENS)
    assert all(list(o.outputs[0].token_ids) == ref_tokens for o in outs)


@pytest.mark.parametrize("case, message", [
    ("wrong_shapes", r"hut_A has shape \(64, 4\), expected \(128, 4\) for model.layers.0.self_attn.q_proj"),
    ("missing_tensor", r"model.layers.0.self_attn.q_proj.hut_gamma is missing"),
    ("not_a_layer", r"model.layers.0.self_attn.rotary is not a layer this model serves with adapters"),
    ("no_weights", r"No adapter found for .*no_weights"),
])
def test_bad_folder_is_refused_and_the_engine_keeps_serving(served: dict, case: str, message: str) -> None:
    bad = served["folders"]["bad"][case]
    with pytest.raises(Exception, match=message):
        served["llm"].llm_engine.add_lora(LoRARequest(f"bad-{case}", 900 + len(case), str(bad)))
    check_against_reference(served, [("attn", 0), (None, 1)])


def wrapper_types(model: torch.nn.Module) -> dict[str, str]:
    """The class of every HUT wrapper in the first decoder layer (runs in vLLM's worker)."""
    return {name.rsplit(".", 1)[-1]: type(m).__name__ for name, m in model.named_modules()
            if name.startswith("model.layers.0.") and hasattr(m, "hut_in")}


def test_adapter_vectors_reach_every_layer_kind(served: dict) -> None:
    """The HUT wrappers replaced vLLM's on fused and row-parallel layers."""
    found = served["llm"].apply_model(wrapper_types)[0]
    assert found == {"qkv_proj": "HUTMergedQKVParallelLinearWithLoRA", "o_proj": "HUTRowParallelLinearWithLoRA",
                     "gate_up_proj": "HUTMergedColumnParallelLinearWithLoRA",
                     "down_proj": "HUTRowParallelLinearWithLoRA"}


def test_logprob_tolerance_is_meaningful(served: dict) -> None:
    """The 1e-4 logprob check above can fail: the base and an adapter differ by far more on the same prompt."""
    (_, base), (_, adapted) = generate(served, [(None, 0), ("all", 0)])
    assert max(abs(a - b) for a, b in zip(base, adapted)) > 1e-2
    assert all(math.isfinite(x) for x in base + adapted)
