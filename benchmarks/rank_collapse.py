"""Does rank r train like rank 1? Measured per optimiser on the embedded MiniLM and 16 real SST-2 sentences.

HUT's forward sees ``M_A`` (d×r) and ``M_B`` (r×k) only through their means, so every column of ``M_A`` gets
``1/r`` of the mean's gradient. From the identity init the columns stay equal, and the mean ``m_A`` moves by
the average column update. Under Adam/AdamW that update is invariant to the ``1/r`` scale (up to ``eps``), so
rank r and rank 1 coincide; under SGD the mean moves ``lr/r`` per unit of its own gradient, so rank r trains
like rank 1 with ``M_A``, ``M_B`` at ``lr/r`` (``γ``, ``β`` unaffected). The script prints, per optimiser, the
largest difference of the training loss between r = 8 and r = 1 over the steps and how far ``m_A`` moved from
the identity at r = 8 relative to r = 1 (1 = same training, 1/8 = the SGD slowdown), then checks the SGD ``lr/r``
equivalence: r = 8 with ``M_A``, ``M_B`` at 8× the learning rate against r = 1.

Run: ``HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python benchmarks/rank_collapse.py [--steps 20] [--data-dir DIR]``
(8 SST-2 sentences cut to 32 tokens, 7 runs of 20 steps: 10 minutes on 2 cores at load average 8).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hut_peft import HUTConfig
from hut_peft.lab.models import resolve_model


def _batch(data_dir: Path, n: int = 8) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    with open(data_dir / "SST-2" / "train.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    tok = AutoTokenizer.from_pretrained(resolve_model("minilm").path)
    enc = tok([r["sentence"] for r in rows], padding=True, truncation=True, max_length=32, return_tensors="pt")
    return dict(enc), torch.tensor([int(r["label"]) for r in rows])


def _train(
    r: int, opt_name: str, lr: float, steps: int, batch, labels, mean_lr_scale: float = 1.0
) -> tuple[list[float], float]:
    """Training losses per step, and ‖m_A − 1‖ summed over the adapted layers at the end."""
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm").path, num_labels=2)
    model = get_peft_model(base, HUTConfig(r=r, target_modules=["query", "value"], task_type="SEQ_CLS"))
    model.train()
    means = [p for n, p in model.named_parameters() if p.requires_grad and ("hut_A" in n or "hut_B" in n)]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not ("hut_A" in n or "hut_B" in n)]
    groups = [{"params": means, "lr": lr * mean_lr_scale}, {"params": rest, "lr": lr}]
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt_name](groups, lr=lr)
    trace = []
    for _ in range(steps):
        torch.manual_seed(1)  # same dropout masks in every run
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        trace.append(loss.item())
    moved = sum((p.detach().mean(dim=-1) - 1).norm().item() for n, p in model.named_parameters() if "hut_A" in n)
    return trace, moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam/AdamW (HUT's registry default)")
    parser.add_argument("--sgd-lr", type=float, default=0.5, help="SGD (at 1e-2 it barely moves in 20 steps)")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "glue")
    args = parser.parse_args()
    batch, labels = _batch(args.data_dir)
    report = {}
    for opt_name, lr in (("sgd", args.sgd_lr), ("adam", args.lr), ("adamw", args.lr)):
        (l1, moved1), (l8, moved8) = (_train(r, opt_name, lr, args.steps, batch, labels) for r in (1, 8))
        report[opt_name] = {"lr": lr, "loss_r1_first_last": [l1[0], l1[-1]],
                            "max_abs_loss_diff_r8_vs_r1": max(abs(a - b) for a, b in zip(l1, l8)),
                            "m_A_moved_r8_over_r1": moved8 / moved1}
        if opt_name == "sgd":
            l8x, _ = _train(8, "sgd", lr, args.steps, batch, labels, mean_lr_scale=8.0)
            report["sgd"]["max_abs_loss_diff_r8_means_at_8x_lr_vs_r1"] = max(abs(a - b) for a, b in zip(l1, l8x))
    report["setup"] = {"model": "minilm", "sentences": len(labels), "max_tokens": 32, "steps": args.steps,
                       "dtype": "float32", "torch": torch.__version__}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
