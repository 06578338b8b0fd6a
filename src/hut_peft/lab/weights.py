"""`hut-peft weights`: how far training moved each adapted matrix, from saved adapters (issue 23).

The paper motivates HUT by saying that, unlike incremental methods, it "maintains a strong correlation" between the
original weight ``W0`` and the updated one. This command measures it. For every adapter a GLUE run saved
(``--save-adapter``: ``seed-N/adapter/``), it rebuilds the run's base model, loads the adapter, merges it (each
method's own exact merge, in float64), and compares each attention query and value matrix, the ones every method
adapts, with the untouched base:

- ``pearson``: the Pearson correlation between the entries of ``W0`` and of ``W_new``;
- ``rel_change``: ``‖W_new − W0‖_F / ‖W0‖_F``;
- ``rank``: the numerical rank of ``ΔW = W_new − W0``: singular values above ``σ_max · max(d, k) · ε`` with ε the
  float64 machine epsilon (numpy's ``matrix_rank`` default); ``rank_90``: how many singular values hold 90% of
  ``‖ΔW‖²_F`` (the effective rank).

Writes one JSON file (``weights.json``) that `hut-peft report` turns into a table and a figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .atomic import write_json_atomic

ADAPTED = ("query.weight", "value.weight")  # the matrices every compared method adapts (q and v)
ENERGY = 0.90


def matrix_stats(w0: torch.Tensor, w_new: torch.Tensor) -> dict[str, float]:
    """Correlation, relative change and ranks of one matrix's update, computed in float64."""
    w0, w_new = w0.detach().to(torch.float64), w_new.detach().to(torch.float64)
    delta = w_new - w0
    a, b = w0.flatten() - w0.mean(), w_new.flatten() - w_new.mean()
    pearson = float((a @ b) / (a.norm() * b.norm()))
    s = torch.linalg.svdvals(delta)
    sigma = float(s[0]) if s.numel() else 0.0
    tol = sigma * max(delta.shape) * torch.finfo(torch.float64).eps
    energy = torch.cumsum(s**2, 0) / (s**2).sum() if sigma > 0 else torch.ones(1, dtype=torch.float64)
    return {
        "pearson": pearson,
        "rel_change": float(delta.norm() / w0.norm()),
        "rank": int((s > tol).sum()) if sigma > 0 else 0,
        "rank_90": int(torch.searchsorted(energy, torch.tensor(ENERGY, dtype=torch.float64)) + 1) if sigma > 0 else 0,
        "shape": list(delta.shape),
    }


def update_stats(build_base: Callable[[], torch.nn.Module], adapter_dir: str | Path) -> dict[str, dict[str, float]]:
    """Per adapted matrix (by parameter name), the stats of one saved adapter against the base ``build_base()``
    makes (called twice: once untouched, once to load the adapter into and merge, in float64)."""
    from .methods import merge_method
    from .methods.checkpoint import load_trainable

    original = {n: p.detach().clone() for n, p in build_base().named_parameters() if n.endswith(ADAPTED)}
    trained = load_trainable(build_base().to(torch.float64), str(adapter_dir))
    merged = dict(merge_method(trained).named_parameters())
    missing = sorted(set(original) - set(merged))
    if missing:
        raise ValueError(f"weights: the merged model has no {missing[0]} (and {len(missing) - 1} more); "
                         f"is {adapter_dir} an adapter of this base model?")
    return {name: matrix_stats(w0, merged[name]) for name, w0 in sorted(original.items())}


def adapter_stats(adapter_dir: Path, model: str | None, task: str, head: str) -> dict[str, dict[str, float]]:
    """``update_stats`` for a GLUE run's adapter; ``model``, ``task`` and ``head`` are the run's (``results.json``:
    ``config`` and the resolved ``settings``)."""
    from .models import DEFAULT_ENCODER, resolve_model
    from .train.glue import base_model

    source = resolve_model(model, default=DEFAULT_ENCODER)
    return update_stats(lambda: base_model(source, task, head), adapter_dir)


def summarise(per_matrix: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean correlation and relative change over the matrices; median, min and max of the ranks."""
    rows = list(per_matrix.values())
    ranks = [r["rank"] for r in rows]
    return {"pearson": statistics.fmean(r["pearson"] for r in rows),
            "pearson_min": min(r["pearson"] for r in rows),
            "rel_change": statistics.fmean(r["rel_change"] for r in rows),
            "rank_median": statistics.median(ranks), "rank_min": min(ranks), "rank_max": max(ranks),
            "rank_90_median": statistics.median(r["rank_90"] for r in rows),
            "matrices": len(rows), "full_rank": min(min(r["shape"]) for r in rows)}


def collect(roots: list[str]) -> list[dict[str, Any]]:
    """One row per saved adapter under ``roots``: its run (task, label, seed, rate, score) and the stats."""
    from .train.glue import best_epoch

    rows = []
    for root in roots:
        for results_path in sorted(Path(root).rglob("results.json")):
            results = json.loads(results_path.read_text())
            if results.get("recipe") != "glue":
                continue
            key = results["primary_metric"]
            for record in results["seeds"]:
                adapter = results_path.parent / f"seed-{record['seed']}" / "adapter"
                if not (adapter / "method.json").is_file():
                    if results["config"].get("save_adapter"):  # saved once, gone now: never drop a row silently
                        raise FileNotFoundError(
                            f"weights: {adapter} is missing although the run saved it (saved adapters are "
                            "not committed); rerun that cell of the sweep to write it again.")
                    continue
                config = results["config"]
                per_matrix = adapter_stats(adapter, config.get("model"), config["task"], results["settings"]["head"])
                rows.append({
                    "task": results["config"]["task"],
                    "label": results["config"].get("tags", {}).get("label") or results["config"]["method"],
                    "seed": record["seed"], "learning_rate": results["settings"]["learning_rate"],
                    "score": best_epoch(record, key).get(key), "metric": key,
                    "adapter": str(adapter), "summary": summarise(per_matrix), "matrices": per_matrix,
                })
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="Folders searched for results.json with saved adapters "
                                                "(e.g. docs/results/glue-fair/weights).")
    parser.add_argument("--output", default="docs/results/glue-fair/weights.json",
                        help="The JSON file written (hut-peft report reads it from beside the runs).")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft weights`."""
    rows = collect(args.runs)
    if not rows:
        raise FileNotFoundError(f"weights: no saved adapter (seed-N/adapter/method.json) under {', '.join(args.runs)}; "
                                "run the GLUE recipe with --save-adapter first.")
    write_json_atomic(Path(args.output), {"energy": ENERGY, "adapted": list(ADAPTED), "runs": rows})
    for row in rows:
        s = row["summary"]
        print(f"{row['task']:5s} {row['label']:6s} seed {row['seed']}: pearson {s['pearson']:.4f}, "
              f"rel. change {s['rel_change']:.4f}, rank {s['rank_median']:g} (90%: {s['rank_90_median']:g}), "
              f"{row['metric']} {row['score']:.4f}")
    print(f"wrote {args.output}")
    return 0
