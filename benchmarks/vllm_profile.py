"""Where a vLLM engine's CPU time goes: torch.profiler over one `generate`, base model or HUT adapters (issue 27).

    python benchmarks/vllm_profile.py base     # vLLM's default engine, compiled, no adapters
    python benchmarks/vllm_profile.py hut      # 64 HUT adapters, compiled (HUT_PEFT_VLLM_COMPILE=1)

The workload of vllm_throughput.py (SmolLM2-135M computed in bf16, q_proj and v_proj adapted, 128 prompts of 32
tokens, 64 output tokens, at most 64 sequences), with the engine in this process so the profiler sees its worker.
Prints two warm-up throughputs, then the 25 operators with the most self CPU time.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the worker in this process: the profiler sees its ops
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(mode: str) -> None:
    if mode == "hut":
        os.environ["HUT_PEFT_VLLM_COMPILE"] = "1"
    import torch
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest
    from vllm_throughput import TARGETS, make_adapters

    from hut_peft.lab.serve import export_smollm2

    base = export_smollm2()
    adapters = make_adapters(base, Path(tempfile.mkdtemp(prefix="vllm-profile-")))
    lora = dict(enable_lora=True, max_loras=64, max_cpu_loras=64, max_lora_rank=8, lora_target_modules=TARGETS)
    llm = LLM(model=str(base), dtype="bfloat16", max_num_seqs=64, max_model_len=192, seed=0,
              **(lora if mode == "hut" else {}))
    rng = random.Random(0)
    prompts = [{"prompt_token_ids": [rng.randrange(3, 40000) for _ in range(32)]} for _ in range(128)]
    params = SamplingParams(temperature=0, max_tokens=64, ignore_eos=True)
    requests = ([LoRARequest(f"hut-{i % 64}", 1 + i % 64, str(adapters["hut"])) for i in range(128)]
                if mode == "hut" else None)
    for _ in range(2):
        start = time.perf_counter()
        outs = llm.generate(prompts, params, lora_request=requests, use_tqdm=False)
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        print(f"{mode}: {tokens / (time.perf_counter() - start):.1f} output tokens/s", flush=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        llm.generate(prompts, params, lora_request=requests, use_tqdm=False)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "hut")
