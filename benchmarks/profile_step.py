"""Where a training step's time goes: torch.profiler over the frozen floor, HUT and LoRA on one bench model.

Prints, per variant, the ops with the largest self CPU time (summed over ``--steps`` steps after a warm-up),
and the total of the element-wise ops HUT adds (``mul``, ``addcmul``, ``sum``, ``mean`` and their backward
nodes) against the matmuls. Used for the step-time discussion in docs/performance.md.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/profile_step.py --model minilm``.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from hut_peft.lab.bench.run import BENCH_MODELS, QUICK_MODELS, _prepare, _step_fn, load_model

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
          "aten::_scaled_dot_product_flash_attention_for_cpu_backward")
ELEMENTWISE = ("aten::mul", "aten::addcmul", "aten::sum", "aten::mean", "aten::add", "aten::div")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", choices=BENCH_MODELS + QUICK_MODELS)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, batch, label = load_model(args.model, torch.device("cpu"))
    print(f"{label}, {args.threads} threads, {args.steps} steps\n")
    for name in ("frozen", "hut", "lora"):
        step = _step_fn(_prepare(name, base), batch)
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 1e3 / args.steps
        matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL) / 1e3 / args.steps
        elementwise = sum(e.self_cpu_time_total for e in events if e.key in ELEMENTWISE) / 1e3 / args.steps
        calls = {k: sum(e.count for e in events if e.key == k) // args.steps for k in ELEMENTWISE}
        print(f"== {name}: {total:.0f} ms/step self CPU; matmul-like {matmul:.0f} ms; element-wise "
              f"(mul/addcmul/sum/mean/add/div) {elementwise:.0f} ms; calls per step {calls}")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
