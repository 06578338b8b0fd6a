"""The report's building blocks: results.json files → markdown tables in the paper's layout, and its Figure 3.

Our numbers and the paper's stand side by side, each labelled; the paper's are copied from its Tables 1–3
(RoBERTa-large and GPT-2 medium), ours come from whatever model the runs used (recorded per table). Shared by
the fair-comparison sections (fair.py) and the page builder (build.py), which import this module, never the reverse.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from ..atomic import atomic_write

GLUE_COLUMNS = ("sst2", "mrpc", "cola", "qnli", "rte", "stsb")
GLUE_NAMES = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "rte": "RTE", "stsb": "STS-B",
              "mnli": "MNLI", "qqp": "QQP"}
E2E_COLUMNS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")

# Table 1 (RoBERTa-large, GLUE dev; mean over 5 seeds): method -> (trainable, {task: score}), score × 100.
PAPER_TABLE1: dict[str, tuple[str, dict[str, float]]] = {
    "full": ("355.0M", {"sst2": 96.4, "mrpc": 90.9, "cola": 68.0, "qnli": 94.7, "rte": 86.6, "stsb": 92.4}),
    "padapter (3.0M)": ("3.0M", {"sst2": 96.1, "mrpc": 90.2, "cola": 68.3, "qnli": 94.8, "rte": 83.8, "stsb": 92.1}),
    "padapter (0.8M)": ("0.8M", {"sst2": 96.6, "mrpc": 89.7, "cola": 67.8, "qnli": 94.8, "rte": 80.1, "stsb": 91.9}),
    "hadapter (6.0M)": ("6.0M", {"sst2": 96.2, "mrpc": 88.7, "cola": 66.5, "qnli": 94.7, "rte": 83.4, "stsb": 91.0}),
    "hadapter (0.8M)": ("0.8M", {"sst2": 96.3, "mrpc": 87.7, "cola": 66.3, "qnli": 94.7, "rte": 91.5, "stsb": 72.9}),
    "lora": ("0.8M", {"sst2": 96.2, "mrpc": 90.2, "cola": 68.2, "qnli": 94.8, "rte": 85.2, "stsb": 92.3}),
    "vera": ("0.061M", {"sst2": 96.1, "mrpc": 90.9, "cola": 68.0, "qnli": 94.4, "rte": 85.9, "stsb": 91.7}),
    "fourierft": ("0.048M", {"sst2": 96.0, "mrpc": 90.9, "cola": 67.1, "qnli": 94.4, "rte": 87.4, "stsb": 91.9}),
    "hut": ("0.9M", {"sst2": 96.1, "mrpc": 91.0, "cola": 70.5, "qnli": 94.2, "rte": 87.4, "stsb": 92.3}),
}
# Table 2 (RoBERTa-large): GFLOPs as the paper counts them; its Figure 3 plots Table 1's average against these.
PAPER_TABLE2_GFLOPS = {"padapter (3.0M)": 2.40, "padapter (0.8M)": 1.80, "hadapter (6.0M)": 1.61,
                       "hadapter (0.8M)": 0.41, "lora": 0.86, "hut": 0.20}
# Table 3 (GPT-2 medium, E2E test set): BLEU, NIST, METEOR, ROUGE-L, CIDEr as printed (BLEU/MET/ROUGE × 100).
PAPER_TABLE3: dict[str, tuple[str, tuple[float, ...]]] = {
    "full": ("354.92M", (68.2, 8.62, 46.2, 71.0, 2.47)),
    "ladapter (0.37M)": ("0.37M", (66.3, 8.41, 45.0, 69.8, 2.40)),
    "ladapter (11.09M)": ("11.09M", (68.9, 8.71, 46.1, 71.3, 2.47)),
    "hadapter (11.09M)": ("11.09M", (67.3, 8.50, 46.0, 70.7, 2.44)),
    "ft_top2": ("25.19M", (68.1, 8.59, 46.0, 70.8, 2.41)),
    "prefix (PreLayer)": ("0.35M", (69.7, 8.81, 46.1, 71.4, 2.49)),
    "lora": ("0.35M", (70.4, 8.85, 46.8, 71.8, 2.53)),
    "vera": ("0.098M", (70.1, 8.81, 46.6, 71.5, 2.50)),
    "fourierft": ("0.048M", (69.1, 8.82, 47.0, 71.8, 2.51)),
    "hut": ("0.45M", (70.4, 8.86, 46.7, 72.1, 2.54)),
}


def collect(roots: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every results.json under the given folders (sorted by path, so reports are reproducible)."""
    found = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"report: no such folder: {root}")
        for path in sorted(root.rglob("results.json")):
            data = json.loads(path.read_text())
            data["_path"] = str(path)
            found.append(data)
    return found


def row_label(result: dict[str, Any]) -> str:
    return result["config"].get("tags", {}).get("label") or result["config"]["method"]


def table_of(result: dict[str, Any]) -> str:
    return result["config"].get("tags", {}).get("table", "main")


def format_params(n: Optional[int]) -> str:
    if n is None:
        return "–"
    if n == 0:  # a zero-shot row trains nothing: "0", not "0.000M", which reads as rounded away
        return "0"
    return f"{n / 1e6:.3f}M" if n < 1e8 else f"{n / 1e6:.1f}M"


def format_pm(stats: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    if not stats or stats.get("n", 0) == 0 or math.isnan(stats["mean"]):
        return "–"
    text = f"{stats['mean'] * scale:.{digits}f}"
    if stats.get("n", 1) > 1:
        text += f" ± {stats['std'] * scale:.{digits}f}"
    return text


def glue_rows(results: list[dict[str, Any]], table: str) -> dict[str, dict[str, Any]]:
    """label -> {task: stats of the headline metric (best epoch), 'params': trainable, 'model': name}."""
    rows: dict[str, dict[str, Any]] = defaultdict(dict)
    for res in results:
        if res.get("recipe") != "glue" or table_of(res) != table or "lr_grid_of" in res["config"].get("tags", {}):
            continue
        cfg, key = res["config"], res["primary_metric"]
        row = rows[row_label(res)]
        row[cfg["task"]] = res["summary"]["best"].get(key)
        row["params"] = res["trainable_parameters"]
        row["model"] = cfg.get("model") or "minilm"
    return dict(rows)


def glue_markdown(results: list[dict[str, Any]], table: str = "main", title: str = "Table 1") -> str:
    rows = glue_rows(results, table)
    if not rows:
        return ""
    tasks = [t for t in GLUE_COLUMNS if any(t in r for r in rows.values())]
    tasks += sorted({t for r in rows.values() for t in r if t in GLUE_NAMES and t not in tasks})
    head = "| method | # trainable | " + " | ".join(GLUE_NAMES[t] for t in tasks) + " | Avg. |"
    lines = [f"### {title}: ours ({', '.join(sorted({r['model'] for r in rows.values()}))}; dev set, "
             "best epoch, mean ± std over seeds, × 100)", "", head, "|" + "---|" * (len(tasks) + 3)]
    for label, row in rows.items():
        cells = [format_pm(row.get(t, {})) for t in tasks]
        means = [row[t]["mean"] for t in tasks if row.get(t) and row[t].get("n")]
        avg = f"{100 * sum(means) / len(means):.1f}" if len(means) == len(tasks) else "–"
        lines.append(f"| {label} | {format_params(row['params'])} | " + " | ".join(cells) + f" | {avg} |")
    if table == "main":
        lines += ["", f"### {title}: the paper (RoBERTa-large; published numbers, mean of 5 seeds)", "",
                  head, "|" + "---|" * (len(tasks) + 3)]
        for label, (params, scores) in PAPER_TABLE1.items():
            cells = [f"{scores[t]:.1f}" if t in scores else "–" for t in tasks]
            shown = [scores[t] for t in tasks if t in scores]
            avg = sum(shown) / len(shown)  # over the columns shown, to compare with ours
            lines.append(f"| {label} | {params} | " + " | ".join(cells) + f" | {avg:.1f} |")
    return "\n".join(lines) + "\n"


def e2e_score_cells(summary: dict[str, Any]) -> list[str]:
    """The five E2E metrics of a run's summary as table cells: BLEU, METEOR, ROUGE-L × 100; NIST, CIDEr as they are."""
    return [format_pm(summary.get("BLEU", {})), format_pm(summary.get("NIST", {}), 1, 2),
            format_pm(summary.get("METEOR", {})), format_pm(summary.get("ROUGE_L", {})),
            format_pm(summary.get("CIDEr", {}), 1, 2)]


def e2e_markdown(results: list[dict[str, Any]]) -> str:
    ours = [r for r in results if r.get("recipe") == "e2e"]
    if not ours:
        return ""
    head = "| method | # trainable | BLEU | NIST | METEOR | ROUGE-L | CIDEr |"
    rule = "|---|---|---|---|---|---|---|"
    models = sorted({r["config"].get("model") or "smollm2" for r in ours})
    lines = [f"### Table 3: ours ({', '.join(models)}; E2E dev MRs as listed, mean ± std over seeds)", "", head, rule]
    for res in ours:
        s = res["summary"]
        mrs = res["seeds"][0]["eval_mrs"]
        lines.append(f"| {row_label(res)} ({mrs} MRs) | {format_params(res['trainable_parameters'])} | "
                     + " | ".join(e2e_score_cells(s)) + " |")
    lines += ["", "### Table 3: the paper (GPT-2 medium, E2E test set; published numbers)", "", head, rule]
    for label, (params, vals) in PAPER_TABLE3.items():
        bleu, nist, meteor, rouge, cider = vals
        lines.append(f"| {label} | {params} | {bleu:.1f} | {nist:.2f} | {meteor:.1f} | {rouge:.1f} | {cider:.2f} |")
    return "\n".join(lines) + "\n"


def ablation_markdown(results: list[dict[str, Any]], table: str, title: str) -> str:
    return glue_markdown(results, table=table, title=title)


def measured_gflops(methods: Iterable[str], arch: str = "minilm-l6", seq_len: int = 128) -> dict[str, float]:
    """Training-step GFLOPs that flop_counter measures for each registry method on ``arch`` (meta device)."""
    from ..flops import flops_table
    from ..methods import METHODS

    names = [m for m in methods if m in METHODS]
    rows = flops_table(arch, names, 1, seq_len, preset="")
    return {row.method: row.train_step_gflops for row in rows if row.method in names}


# One colour per method on every figure (tab10's order), so a method reads the same in each panel and plot.
METHOD_COLOURS = {name: f"C{i}" for i, name in enumerate(
    ("hut", "lora", "full", "ia3", "bitfit", "hadamard_adapter", "padapter", "hadapter", "vera", "fourierft"))}
METHOD_COLOURS["hira"] = "black"  # tab10 has ten colours, all taken above (its brown is the Hadamard adapter's)


# How a method is named on the page and in figure legends (the registry's keys are for the command line).
METHOD_NAMES = {"full": "Full FT", "bitfit": "BitFit", "hadamard_adapter": "Hadamard adapter", "ia3": "(IA)³",
                "lora": "LoRA", "hut": "HUT", "padapter": "PAdapter", "hadapter": "HAdapter", "ladapter": "LAdapter",
                "vera": "VeRA", "fourierft": "FourierFT", "hira": "HiRA"}


def display_name(label: str) -> str:
    """A row's printed name: "padapter (3.0M)" -> "PAdapter (3.0M)"; labels we do not know stay as they are."""
    base = _base(label)
    return METHOD_NAMES.get(base, base) + label[len(base):]


def method_colour(label: str) -> str:
    return METHOD_COLOURS.get(_base(label), "C9")


def _base(label: str) -> str:
    """The method a row belongs to ("padapter (3.0M)" -> "padapter"): one colour per method in both panels."""
    return label.split(" ")[0]


def figure(results: list[dict[str, Any]], path: Path, gflops: dict[str, float]) -> Path:
    """Figure 3 as the paper draws it (average GLUE score against GFLOPs), ours beside the paper's.

    Each method keeps one colour in both panels and a variant of it (the paper's adapter sizes) one marker; names
    go in a legend under the panels, so labels never overlap points or each other.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = glue_rows(results, "main")
    tasks = [t for t in GLUE_COLUMNS if any(t in r for r in rows.values())]
    ours = {}
    for label, row in rows.items():
        means = [row[t]["mean"] for t in tasks if row.get(t) and row[t].get("n")]
        if label in gflops and tasks and len(means) == len(tasks):
            ours[label] = (gflops[label], 100 * sum(means) / len(means))
    paper = {label: (g, sum(PAPER_TABLE1[label][1].values()) / len(PAPER_TABLE1[label][1]))
             for label, g in PAPER_TABLE2_GFLOPS.items()}
    markers = "osD^v<>"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, points in ((left, paper), (right, ours)):
        seen: dict[str, int] = defaultdict(int)
        for label, (g, avg) in points.items():
            marker = markers[seen[_base(label)] % len(markers)]
            seen[_base(label)] += 1
            ax.scatter(g, avg, s=45, color=method_colour(label), marker=marker, label=display_name(label),
                       zorder=3)
        ax.grid(alpha=0.3)
        if points:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)
    left.set(title="Paper (RoBERTa-large, Tables 1–2)", xlabel="GFLOPs (paper's accounting)",
             ylabel="average GLUE score")
    model = ", ".join(sorted({r["model"] for r in rows.values()})) or "–"
    right.set(title=f"Ours ({model}; {', '.join(GLUE_NAMES[t] for t in tasks)})",
              xlabel="train-step GFLOPs, measured (flop_counter; MiniLM-L6, 128 tokens)", ylabel="average score")
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG atomically (a temp file, then a rename: never half a picture), then close it."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
