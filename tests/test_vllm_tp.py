"""HUT adapters under vLLM tensor parallelism (2 CPU workers): the same tokens as one worker and as transformers.

Column-parallel layers (qkv_proj, gate_up_proj) get their output vectors sliced by vLLM's own LoRA slicing;
row-parallel ones (o_proj, down_proj) their input scale, with the shift added on rank 0 only (the all-reduce
sums the ranks). On this 2-core machine vLLM cannot place two workers by NUMA node ("Not enough allowed NUMA
nodes to bind threads of 2 local CPUWorkers"), so the test binds them by hand: one core each.
"""

from __future__ import annotations

import pytest
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest

from vllm_fixtures import PROMPTS, greedy_reference, make_served_models


def test_two_tensor_parallel_workers_match_transformers(tmp_path_factory: pytest.TempPathFactory,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folders = make_served_models(tmp_path_factory.mktemp("vllm-tp"))
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    llm = LLM(model=str(folders["base"]), enable_lora=True, dtype="float32", max_model_len=128, max_loras=4,
              max_lora_rank=8, max_num_seqs=32, tensor_parallel_size=2, distributed_executor_backend="mp", seed=0)
    names = [None, "attn", "all", "rows"]
    requests = {n: LoRARequest(n, k + 1, str(folders["adapters"][n])) for k, n in enumerate(names[1:])}
    jobs = [(name, i) for i in range(len(PROMPTS)) for name in names]
    outs = llm.generate([{"prompt_token_ids": PROMPTS[i]} for _, i in jobs],
                        SamplingParams(temperature=0, max_tokens=8, ignore_eos=True),
                        lora_request=[requests.get(name) for name, _ in jobs], use_tqdm=False)
    for (name, i), out in zip(jobs, outs):
        adapter = None if name is None else folders["adapters"][name]
        assert list(out.outputs[0].token_ids) == greedy_reference(folders["base"], adapter, PROMPTS[i], 8)[0], (name, i)
    del llm
