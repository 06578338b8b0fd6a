"""The weights section of docs/RESULTS.md: `hut-peft weights`' statistics (weights.json) as a table and a figure.

Tests the paper's motivating claim (HUT keeps the updated weight strongly correlated with ``W0``) on the runs the
fair sweep saved, and puts each run's score beside it, so a reader sees whether the correlation tracks the score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .tables import GLUE_NAMES, display_name, method_colour, save_figure

ORDER = ("full", "lora", "hira", "hut")


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rank = {m: i for i, m in enumerate(ORDER)}
    return sorted(data["runs"], key=lambda r: (r["task"], rank.get(r["label"], len(ORDER)), r["label"], r["seed"]))


def weights_table(data: dict[str, Any]) -> str:
    """One row per saved run: rate, score, and the update of its q and v matrices."""
    lines = ["| task | method | seed | lr | score | Pearson(W0, W_new): mean (min) | ‖ΔW‖ / ‖W0‖ | rank of ΔW: "
             "median (min–max) of full | 90%-energy rank |", "|---|---|---|---|---|---|---|---|---|"]
    for r in _rows(data):
        s = r["summary"]
        lines.append(f"| {GLUE_NAMES[r['task']]} | {display_name(r['label'])} | {r['seed']} | {r['learning_rate']:g} | "
                     f"{100 * r['score']:.1f} | {s['pearson']:.4f} ({s['pearson_min']:.4f}) | {s['rel_change']:.4f} | "
                     f"{s['rank_median']:g} ({s['rank_min']}–{s['rank_max']}) of {s['full_rank']} | "
                     f"{s['rank_90_median']:g} |")
    return "\n".join(lines) + "\n"


def weights_lines(data: dict[str, Any]) -> list[str]:
    """Per task, the methods ordered by correlation and by score: the two orders side by side."""
    lines = []
    for task in sorted({r["task"] for r in data["runs"]}):
        rows = [r for r in _rows(data) if r["task"] == task]
        by_corr = sorted(rows, key=lambda r: -r["summary"]["pearson"])
        by_score = sorted(rows, key=lambda r: -r["score"])
        lines.append(f"- {GLUE_NAMES[task]}: by correlation with W0, "
                     + " > ".join(f"{display_name(r['label'])} ({r['summary']['pearson']:.4f})" for r in by_corr)
                     + "; by score, " + " > ".join(f"{display_name(r['label'])} ({100 * r['score']:.1f})"
                                                   for r in by_score) + ".")
    return lines


def _spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (no ties expected among four methods' scores and correlations)."""
    from scipy import stats

    return float(stats.spearmanr(xs, ys).statistic)


def claim_lines(data: dict[str, Any]) -> list[str]:
    """Whether the paper's claim holds (HUT's W_new more correlated with W0 than the incremental LoRA's), per task,
    and whether correlation tracks the score (Spearman's ρ over the methods of a task; four points: a description,
    not a test)."""
    lines = []
    for task in sorted({r["task"] for r in data["runs"]}):
        rows = {r["label"]: r for r in data["runs"] if r["task"] == task and r["seed"] == 0}
        if "hut" not in rows or "lora" not in rows:
            continue
        hut, lora = rows["hut"]["summary"]["pearson"], rows["lora"]["summary"]["pearson"]
        rho = _spearman([r["summary"]["pearson"] for r in rows.values()], [r["score"] for r in rows.values()])
        lines.append(f"- {GLUE_NAMES[task]}: the claim {'holds' if hut > lora else 'does not hold'} (HUT's mean "
                     f"Pearson {hut:.4f} against LoRA's {lora:.4f}); across the {len(rows)} methods, correlation and "
                     f"score have Spearman's ρ = {rho:+.2f}.")
    return lines


def weights_figure(data: dict[str, Any], path: Path) -> Path:
    """Left: 1 − Pearson(W0, W_new) per method and task (log scale: how far from perfectly correlated); right: the
    run's score against it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(data)
    tasks = sorted({r["task"] for r in rows})
    labels = [m for m in ORDER if any(r["label"] == m for r in rows)]
    labels += sorted({r["label"] for r in rows} - set(labels))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(labels))
    markers = "osD^v"
    for j, label in enumerate(labels):
        xs, ys = [], []
        for i, task in enumerate(tasks):
            for r in rows:
                if r["task"] == task and r["label"] == label:
                    xs.append(i + (j - (len(labels) - 1) / 2) * width)
                    ys.append(max(1e-12, 1 - r["summary"]["pearson"]))
        left.bar(xs, ys, width=width, color=method_colour(label), label=display_name(label))
    left.set(yscale="log", xticks=range(len(tasks)), xticklabels=[GLUE_NAMES[t] for t in tasks],
             ylabel="1 − Pearson(W0, W_new), mean over q, v", title="How far each method moves W0 (lower: closer)")
    left.legend(fontsize=8, frameon=False)
    for i, task in enumerate(tasks):
        for r in rows:
            if r["task"] == task:
                right.scatter(max(1e-12, 1 - r["summary"]["pearson"]), 100 * r["score"], color=method_colour(r["label"]),
                              marker=markers[i % len(markers)], s=50, zorder=3)
        right.scatter([], [], color="grey", marker=markers[i % len(markers)], label=GLUE_NAMES[task])
    right.set(xscale="log", xlabel="1 − Pearson(W0, W_new)", ylabel="dev score (× 100, best epoch)",
              title="Score against correlation (colour: method)")
    right.legend(fontsize=8, frameon=False)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def weights_section(weights_json: Path, figure_path: Path) -> str:
    """The section's markdown (and its figure, written beside the page), or "" without statistics."""
    if not weights_json.is_file():
        return ""
    data = json.loads(weights_json.read_text())
    if not data.get("runs"):
        return ""
    weights_figure(data, figure_path)
    return "\n".join([
        "## Does HUT keep W_new correlated with W0? (the paper's motivating claim, measured)", "",
        f"Seed 0 of full fine-tuning, LoRA, HiRA and HUT at their chosen rates, rerun with the trained weights saved; "
        f"per attention query and value matrix (the ones every method adapts), merged in float64: the Pearson "
        f"correlation of the entries of W0 and W_new, the relative change, and the rank of ΔW = W_new − W0 (singular "
        f"values above σ_max · max(d, k) · ε, ε the float64 epsilon; the 90%-energy rank beside it). "
        f"`hut-peft weights {weights_json.parent}/weights` writes `{weights_json}`.", "",
        weights_table(data), *weights_lines(data), *claim_lines(data), "",
        f"![Correlation of W0 and W_new]({figure_path.name})", ""])
