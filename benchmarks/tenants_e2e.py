"""A real multi-tenant workload (issue 28, item 4): E2E NLG restaurants as tenants, on the embedded SmolLM2.

The E2E training set (``../shared/data/e2e/trainset.csv``) describes a few dozen restaurants; each restaurant
(the MR's ``name[...]``) becomes a tenant that wants its own adapter. For the ``--tenants`` most frequent names, a
seeded shuffle gives ``--train-rows`` rows to train on and ``--eval-rows`` held-out rows. Rows are TRL's
prompt-completion format: the linearised MR and `` ||`` as the prompt, the reference as the completion.

It runs ``hut-peft tenants`` twice on the same file, jointly and ``--separate``, then scores each tenant's held-out
rows (mean cross-entropy of the completion tokens, and its exp, the perplexity) with the base model, the tenant's
joint adapter and its separate adapter, all in one mixed batch per tenant (``adapter_names``), and the largest
difference between the joint and the separate adapters' tensors. Writes one JSON file.

    python benchmarks/tenants_e2e.py --out docs/results/tenants-e2e.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "e2e" / "trainset.csv"
NAME = re.compile(r"name\[([^\]]*)\]")


def tenant_rows(path: Path, tenants: int, train_rows: int, eval_rows: int, seed: int) -> tuple[list[dict], list[dict]]:
    from hut_peft.lab.data.e2e import linearize_mr

    with path.open(newline="", encoding="utf-8") as f:
        pairs = [(row["mr"], row["ref"]) for row in csv.DictReader(f)]
    by_name: dict[str, list[tuple[str, str]]] = {}
    for mr, ref in pairs:
        match = NAME.search(mr)
        if match:
            by_name.setdefault(match.group(1), []).append((mr, ref))
    top = [name for name, _ in Counter({n: len(v) for n, v in by_name.items()}).most_common(tenants)]
    train, held_out = [], []
    gen = torch.Generator().manual_seed(seed)
    for name in top:
        rows = by_name[name]
        order = torch.randperm(len(rows), generator=gen).tolist()
        tenant = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
        for k, i in enumerate(order[: train_rows + eval_rows]):
            mr, ref = rows[i]
            row = {"tenant": tenant, "prompt": f"{linearize_mr(mr)} ||", "completion": f" {ref.strip()}"}
            (train if k < train_rows else held_out).append(row)
    return train, held_out


def run_cli(data: Path, out: Path, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "hut_peft.cli", "tenants", str(data), "--model", "smollm2", "--output-dir",
               str(out), "--batch-size", str(args.batch_size), "--rows-per-step", str(args.rows_per_step),
               "--epochs", str(args.epochs), "--learning-rate", str(args.learning_rate), "--seed", str(args.seed),
               "--threads", "1", "--max-length", "96", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {**json.loads((out / "tenants.json").read_text()), "wall_s": time.perf_counter() - start}


@torch.no_grad()
def held_out_loss(model: Any, tokenizer: Any, rows: list[dict], adapter: str) -> float:
    """Mean cross-entropy of the completion tokens of ``rows`` with ``adapter`` ("__base__": the base model)."""
    from hut_peft.hut.tenant_data import collate, text_format, tokenize_row

    fmt = text_format(list(rows[0]))
    batch = collate([tokenize_row(r, tokenizer, fmt, 96) for r in rows], tokenizer.pad_token_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   adapter_names=[adapter] * len(rows)).logits
    labels = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[:, 1:]
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--train-rows", type=int, default=32)
    parser.add_argument("--eval-rows", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows-per-step", type=int, default=32,
                        help="A joint step of 32 rows of ~60 tokens peaks at ~10 GiB resident with SmolLM2's 49k-word head.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from peft import PeftModel
    from safetensors.torch import load_file

    import hut_peft
    from hut_peft.lab.tenants import load_model

    train, held_out = tenant_rows(args.data, args.tenants, args.train_rows, args.eval_rows, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in train))
        joint = run_cli(data, root / "joint", args)
        separate = run_cli(data, root / "separate", args, "--separate")
        # A joint run whose steps hold one tenant batch each: the same batch shapes as --separate. What remains of
        # the difference to --separate is the joint path itself; the rest comes from the shapes (padding width,
        # rows per matmul), i.e. float rounding.
        one_per_step = run_cli(data, root / "joint-one-per-step", args, "--rows-per-step", str(args.batch_size))
        names = sorted({r["tenant"] for r in train})

        def max_diff(a: str, b: str) -> float:
            return max(max((x[k] - y[k]).abs().max().item() for k in x)
                       for x, y in ((load_file(root / a / t / "adapter_model.safetensors"),
                                     load_file(root / b / t / "adapter_model.safetensors")) for t in names))

        diff = max_diff("joint", "separate")
        diffs = {"joint_vs_separate": diff, "one_batch_per_step_vs_separate": max_diff("joint-one-per-step", "separate"),
                 "joint_vs_one_batch_per_step": max_diff("joint", "joint-one-per-step")}
        base, tokenizer = load_model("smollm2")
        model = PeftModel.from_pretrained(base, str(root / "joint" / names[0]), adapter_name=names[0])
        hut_peft.load_adapters(model, {t: root / "joint" / t for t in names[1:]})
        hut_peft.load_adapters(model, {f"sep-{t}": root / "separate" / t for t in names})
        model.eval()
        per_tenant = {}
        for t in names:
            rows = [r for r in held_out if r["tenant"] == t]
            losses = {"base": held_out_loss(model, tokenizer, rows, "__base__"),
                      "joint": held_out_loss(model, tokenizer, rows, t),
                      "separate": held_out_loss(model, tokenizer, rows, f"sep-{t}")}
            per_tenant[t] = {"train_rows": sum(r["tenant"] == t for r in train), "eval_rows": len(rows),
                             "loss": losses, "perplexity": {k: math.exp(v) for k, v in losses.items()}}
            print(t, json.dumps(per_tenant[t]["loss"]), flush=True)
    result = {"command": "python benchmarks/tenants_e2e.py " + " ".join(sys.argv[1:]), "settings": vars(args) | {
        "data": str(args.data), "out": str(args.out)}, "model": "SmolLM2-135M-Instruct (embedded, fp32)",
        "targets": "q_proj, v_proj (hut-peft tenants' default), r = 1", "per_tenant": per_tenant,
        "max_abs_diff_joint_vs_separate": diff, "max_abs_diff": diffs,
        "wall_s": {"joint": joint["wall_s"], "separate": separate["wall_s"],
                   "joint_one_batch_per_step": one_per_step["wall_s"]},
        "steps": {"joint": joint["steps"], "separate": separate["steps"]},
        "peak_rss_mib": {"joint": joint["peak_rss_mib"], "separate": separate["peak_rss_mib"]}}
    print(json.dumps({k: result[k] for k in ("max_abs_diff", "wall_s", "steps")}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
