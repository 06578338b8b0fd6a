"""What HUT and LoRA adapters cost inside one vLLM engine: base-model, HUT and LoRA traffic, interleaved (issue 22).

    python benchmarks/vllm_adapter_cost.py --adapters 64 --reps 3 --output docs/results/vllm-adapter-cost.json

`benchmarks/vllm_throughput.py` runs vLLM's own benchmark, one engine per configuration, so its adapter rows
also pay for vLLM's adapter mode itself (on CPU: eager execution and per-step slot bookkeeping) against a base
model run without it. This script separates the two: one engine with adapters enabled (``--max-loras K``) serves
the same prompts three ways, in turn, ``--reps`` times: every request on the base model, every request on one of
K HUT adapters (round-robin), every request on one of K LoRA adapters. Same model, prompts and settings as
vllm_throughput.py (SmolLM2-135M bf16, q_proj and v_proj at rank 8). Medians of output tokens/s, and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_throughput import RANK, TARGETS, make_adapters  # noqa: E402


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapters", type=int, default=64, help="K: adapters of each kind receiving traffic.")
    parser.add_argument("--model", default=None, help="Base model folder (default: the embedded SmolLM2 in bf16).")
    parser.add_argument("--num-prompts", type=int, default=128)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from hut_peft.lab.serve import export_smollm2

    base = Path(args.model) if args.model else export_smollm2()
    adapters = make_adapters(base, Path(tempfile.mkdtemp(prefix="vllm-cost-")))
    k = args.adapters
    llm = LLM(model=str(base), enable_lora=True, max_loras=k, max_cpu_loras=2 * k, max_lora_rank=RANK,
              lora_target_modules=TARGETS, dtype="bfloat16", max_num_seqs=args.max_num_seqs,
              max_model_len=2 * (args.input_len + args.output_len), seed=0)
    rng, vocab = random.Random(0), llm.llm_engine.model_config.get_vocab_size()
    prompts = [{"prompt_token_ids": [rng.randrange(3, vocab) for _ in range(args.input_len)]}
               for _ in range(args.num_prompts)]
    params = SamplingParams(temperature=0, max_tokens=args.output_len, ignore_eos=True)
    traffic = {"base": [None] * len(prompts),
               "hut": [LoRARequest(f"hut-{i % k}", 1 + i % k, str(adapters["hut"])) for i in range(len(prompts))],
               "lora": [LoRARequest(f"lora-{i % k}", 1 + k + i % k, str(adapters["lora"])) for i in range(len(prompts))]}
    for requests in traffic.values():  # warm-up: loads every adapter once, so the timed runs only serve
        llm.generate(prompts, params, lora_request=requests, use_tqdm=False)
    rates: dict[str, list[float]] = {name: [] for name in traffic}
    for _ in range(args.reps):
        for name, requests in traffic.items():
            start = time.perf_counter()
            outs = llm.generate(prompts, params, lora_request=requests, use_tqdm=False)
            elapsed = time.perf_counter() - start
            rates[name].append(sum(len(o.outputs[0].token_ids) for o in outs) / elapsed)
            print(f"{name:5s}: {rates[name][-1]:8.1f} output tokens/s", flush=True)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    lines = ["| traffic (one engine, adapters enabled) | output tokens/s (median) | × base traffic |", "|---|---:|---:|"]
    for name, label in (("base", "base model"), ("hut", f"{k} HUT adapters, round-robin"),
                        ("lora", f"{k} LoRA adapters, round-robin")):
        lines.append(f"| {label} | {medians[name]:,.1f} | {medians[name] / medians['base']:.3f} |")
    print("\n".join(lines))
    if args.output:
        from hut_peft.lab.atomic import write_text_atomic

        record = {"rates": rates, "medians": medians, "settings": vars(args), "cpu": os.cpu_count()}
        write_text_atomic(args.output, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
