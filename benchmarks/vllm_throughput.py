"""Output tokens/s of vLLM's own offline benchmark (``vllm bench throughput``): base model, HUT and LoRA (issue 22).

    python benchmarks/vllm_throughput.py --counts 1,16,64,256 --output docs/results/vllm-throughput.json

One process per configuration (vLLM starts an engine per run; ``--reps N`` runs every row N times, in rounds):
the base model as vLLM runs it by default, the
base model eager (``--enforce-eager``: vLLM's CPU build turns compilation off whenever adapters are enabled,
so this is the base model under the same execution mode as the adapter runs), then for each K the same
requests spread round-robin over K HUT adapters (``hut``: vLLM's adapter mode as it is, eager on CPU;
``hut-compiled``: the same with ``HUT_PEFT_VLLM_COMPILE=1``, which keeps vLLM's compilation for an engine whose
adapters are all HUT), then over K LoRA adapters (the same folder loaded K times
under K ids: K distinct adapters for vLLM, each in its own slot; ``--max-loras K``). Both adapt ``q_proj`` and
``v_proj`` at rank 8 (HUT's r only sizes M_A, M_B; it serves three vectors per layer), and both runs restrict
vLLM's wrapping to those layers (``--lora-target-modules``). Model: the embedded SmolLM2-135M-Instruct computed
in bf16 (``hut-peft serve``'s default), random prompts of fixed lengths, every request to the full output length.
Writes a JSON with every run's command, wall time and vLLM's numbers, and prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

RANK = 8
TARGETS = ["q_proj", "v_proj"]


def make_adapters(base: Path, folder: Path) -> dict[str, Path]:
    """One HUT and one LoRA adapter for ``base`` (random values: throughput does not depend on them)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from hut_peft import HUTConfig

    out = {"hut": folder / "hut", "lora": folder / "lora"}
    for name, config in (("hut", HUTConfig(r=RANK, target_modules=TARGETS, init="perturbed")),
                         ("lora", LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS))):
        if (out[name] / "adapter_config.json").is_file():
            continue
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16), config)
        for pname, p in model.named_parameters():
            if "lora_B" in pname:  # a zero B would let no kernel skip anything anyway; give it values
                torch.nn.init.normal_(p, std=0.02)
        model.save_pretrained(out[name])
    return out


def bench_command(base: Path, adapter: Optional[Path], count: int, args: argparse.Namespace, output: Path,
                  eager: bool = False) -> list[str]:
    command = [sys.executable, "-m", "hut_peft.serving.vllm_main", "bench", "throughput", "--model", str(base),
               "--dataset-name", "random", "--random-input-len", str(args.input_len),
               "--random-output-len", str(args.output_len), "--num-prompts", str(args.num_prompts),
               "--dtype", "bfloat16", "--max-model-len", str(2 * (args.input_len + args.output_len)),
               "--max-num-seqs", str(args.max_num_seqs), "--seed", "0", "--output-json", str(output)]
    if adapter is None and eager:
        command += ["--enforce-eager"]
    if adapter is not None:
        command += ["--enable-lora", "--lora-path", str(adapter), "--max-loras", str(count), "--max-cpu-loras",
                    str(count), "--max-lora-rank", str(RANK), "--lora-assignment", "round-robin",
                    "--lora-target-modules", *TARGETS]
    return command


def run_one(command: list[str], output: Path, compiled_hut: bool = False) -> dict:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HUT_PEFT_VLLM_COMPILE": "1" if compiled_hut else "0"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    match = re.search(r"([\d.]+) output tokens/s", done.stdout)
    if match is None:
        raise RuntimeError(f"no 'output tokens/s' in vLLM's output:\n{done.stdout[-3000:]}")
    return {**json.loads(output.read_text()), "output_tokens_per_second": float(match.group(1)), "wall_s": wall,
            "command": " ".join(command[2:])}


def medians(runs: list[dict]) -> dict[tuple[str, int], float]:
    """Median output tokens/s per (method, adapters) over the rounds, in the order the rows first ran."""
    rows: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        rows.setdefault((r["method"], r["adapters"]), []).append(r["output_tokens_per_second"])
    return {row: statistics.median(tps) for row, tps in rows.items()}


def table(runs: list[dict]) -> str:
    rows = medians(runs)
    base, eager = rows[("base", 0)], rows.get(("base-eager", 0), float("nan"))
    lines = ["| served | adapters | output tokens/s | × base | × base eager |", "|---|---:|---:|---:|---:|"]
    for (method, count), tps in rows.items():
        lines.append(f"| {method} | {count or '–'} | {tps:,.1f} | {tps / base:.3f} | {tps / eager:.3f} |")
    return "\n".join(lines)


def write_record(path: str, runs: list[dict], args: argparse.Namespace) -> None:
    from hut_peft.lab.atomic import write_text_atomic

    record = {"runs": runs, "torch_threads": torch.get_num_threads(), "cpu": os.cpu_count(),
              "settings": {k: v for k, v in vars(args).items() if k != "output"}}
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="1,16,64,256", help="Numbers of adapters receiving traffic.")
    parser.add_argument("--model", default=None, help="Base model folder (default: the embedded SmolLM2 in bf16).")
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--methods", default="hut,hut-compiled,lora")
    parser.add_argument("--reps", type=int, default=1,
                        help="Rounds over every row, interleaved; the table gives each row's median.")
    parser.add_argument("--output", default=None, help="Write the runs here as JSON.")
    args = parser.parse_args(argv)

    from hut_peft.lab.serve import export_smollm2

    base = Path(args.model) if args.model else export_smollm2()
    work = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    adapters = make_adapters(base, work)
    adapters["hut-compiled"] = adapters["hut"]
    plan: list[tuple[str, Optional[Path], int]] = [("base", None, 0), ("base-eager", None, 0)]
    for count in map(int, args.counts.split(",")):
        plan += [(method, adapters[method], count) for method in args.methods.split(",")]
    runs = []
    for rep, (method, adapter, count) in ((rep, row) for rep in range(args.reps) for row in plan):
        output = work / f"{method}-{count}-{rep}.json"
        result = run_one(bench_command(base, adapter, count, args, output, eager=method == "base-eager"), output,
                         compiled_hut=method == "hut-compiled")
        runs.append({"method": method, "adapters": count, "round": rep, **result})
        print(f"{method:12s} K={count:4d}: {result['output_tokens_per_second']:8.1f} output tokens/s "
              f"({result['wall_s']:.0f} s)", flush=True)
        if args.output:  # after every row, so a run stopped part-way keeps the rows it finished
            write_record(args.output, runs, args)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
