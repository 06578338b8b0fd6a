"""The fair reproduction's findings: tuned rates, mean ± std over seeds, paired verdicts, convergence curves.

Reads the ``results.json`` files of a sweep with learning-rate grids (``configs/glue-fair.yaml``,
``configs/e2e-fair.yaml``) and writes the sections that lead ``docs/RESULTS.md``: measured verdicts first, then
the tables beside the paper's. Paired comparisons use the same seeds for both methods (seed ``s`` fixes the
data order and the head's initialisation for every method), so a paired t-test over seeds removes what the
seeds share; with three seeds it separates only large, consistent gaps, and the verdict says so.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

from .tables import (
    GLUE_COLUMNS,
    GLUE_NAMES,
    PAPER_TABLE1,
    PAPER_TABLE3,
    display_name,
    e2e_score_cells,
    format_params,
    format_pm,
    method_colour,
    row_label,
    save_figure,
    table_of,
)

# Dev-set majority class (accuracy) or the constant predictor (MCC, Pearson), from the GLUE dev label counts
# (tests/test_fair_report.py recomputes them from ../shared/data/glue).
MAJORITY = {"sst2": 0.509, "mrpc": 0.684, "rte": 0.527, "cola": 0.0, "stsb": 0.0}
DEV_SIZE = {"sst2": 872, "mrpc": 408, "rte": 277, "cola": 1043, "stsb": 1500}


def clear_margin(task: str) -> float:
    """How far above the majority class a dev score must be to be clearly above it: two standard errors of the
    score a predictor without skill would get on this dev set (binomial for accuracy; 1/sqrt(n) for MCC and
    Pearson, whose sqrt(n)-scaled values are standard normal under independence)."""
    n, m = DEV_SIZE[task], MAJORITY[task]
    return 2 * (math.sqrt(m * (1 - m) / n) if m > 0 else 1 / math.sqrt(n))

# Issue 11's bar for full, LoRA, (IA)³ and HUT (best epoch, mean over seeds).
TARGETS = {"sst2": 0.80, "mrpc": 0.72, "rte": 0.56, "cola": 0.15, "stsb": 0.60}
METHOD_ORDER = ("zero-shot", "full", "bitfit", "hadamard_adapter", "ia3", "lora", "hira", "hut")  # E2E's floor first
COMPARISONS = (("hut", "lora"), ("hut", "ia3"), ("hut", "hira"))
ALPHA = 0.05


def _tasks(rows: dict[str, dict[str, Any]]) -> list[str]:
    return [t for t in GLUE_COLUMNS if any(t in r for r in rows.values())]


def _ordered(labels: Any) -> list[str]:
    known = [m for m in METHOD_ORDER if m in labels]
    return known + sorted(set(labels) - set(known))


def glue_cells(results: list[dict[str, Any]], table: str = "main") -> dict[str, dict[str, dict[str, Any]]]:
    """label -> task -> the cell's results (final cells only: grid probes carry ``lr_grid_of``)."""
    cells: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for res in results:
        tags = res["config"].get("tags", {})
        if res.get("recipe") == "glue" and table_of(res) == table and "lr_grid_of" not in tags:
            cells[row_label(res)][res["config"]["task"]] = res
    return dict(cells)


def seed_scores(res: dict[str, Any]) -> dict[int, float]:
    """Seed -> best-epoch headline metric."""
    key = res["primary_metric"]
    return {r["seed"]: r["best"][key] for r in res["seeds"] if key in r.get("best", {})}


def paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Paired comparison of two methods over their common seeds: mean difference, 95% CI, t-test, verdict."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    n = len(diffs)
    out: dict[str, Any] = {"seeds": seeds, "diffs": diffs, "n": n,
                           "mean": statistics.fmean(diffs) if diffs else float("nan")}
    if n < 2:
        return {**out, "sd": float("nan"), "ci": float("nan"), "p": float("nan"),
                "verdict": "not enough seeds"}
    sd = statistics.stdev(diffs)
    ci = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue) if sd > 0 else (
        0.0 if out["mean"] != 0 else 1.0)
    if p < ALPHA:
        verdict = "better" if out["mean"] > 0 else "worse"
    else:
        verdict = f"not distinguishable at {n} seeds"
    return {**out, "sd": sd, "ci": ci, "p": p, "verdict": verdict}


def _score(value: float) -> str:
    return f"{value * 100:.1f}"


def _p_value(p: float) -> str:
    """Two decimals, or one significant digit below 0.01, or a bound below 0.001 (never a bare "p = 0.00")."""
    if math.isnan(p):
        return "–"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2f}" if p >= 0.01 else f"p = {p:.1g}"


def _signed(value: float) -> str:
    text = f"{value * 100:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def verdict_lines(cells: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One bullet per comparison and task, and one on the bar: the findings that lead the page."""
    tasks = _tasks(cells)
    lines = []
    for ours, other in COMPARISONS:
        if ours not in cells or other not in cells:
            continue
        parts, tally = [], defaultdict(int)
        for task in tasks:
            if task in cells[ours] and task in cells[other]:
                cmp = paired(seed_scores(cells[ours][task]), seed_scores(cells[other][task]))
                tally[cmp["verdict"].split(" at ")[0]] += 1
                p = _p_value(cmp["p"])
                parts.append(f"{GLUE_NAMES[task]} {_signed(cmp['mean'])} ({cmp['verdict']}, {p})")
        if parts:
            summary = ", ".join(f"{k} on {v} task{'s' if v > 1 else ''}" for k, v in sorted(tally.items()))
            lines.append(f"- **{display_name(ours)} against {display_name(other)}** "
                         f"(paired over seeds, best-epoch dev score × 100): {summary}. " + "; ".join(parts) + ".")
    missed = []
    for label in _ordered(cells):
        for task in tasks:
            res = cells[label].get(task)
            if res is None:
                continue
            mean = statistics.fmean(seed_scores(res).values())
            if label in ("full", "lora", "ia3", "hut") and mean < TARGETS[task]:
                missed.append(f"{display_name(label)} on {GLUE_NAMES[task]} is below its target "
                              f"({_score(mean)} < {_score(TARGETS[task])})")
            if mean <= MAJORITY[task] + clear_margin(task):
                missed.append(f"{display_name(label)} on {GLUE_NAMES[task]} is not clearly above the "
                              f"majority class ({_score(mean)}, within {_score(clear_margin(task))} of "
                              f"{_score(MAJORITY[task])})")
    lines.append("- **The bar** (every method clearly above the majority class, that is by more than two standard "
                 "errors of a no-skill predictor's dev score; full, LoRA, (IA)³ and HUT at "
                 "SST-2 ≥ 80, MRPC ≥ 72, RTE ≥ 56, CoLA MCC ≥ 15, STS-B Pearson ≥ 60): "
                 + ("met by every method on every task run." if not missed else "not met. " + "; ".join(missed)
                    + ". The evidence: every rate tried, in the learning-rate table below."))
    return lines


# Side tables, each variant against main-table cells of the same task: (table, heading, main labels to pair with).
SIDE_FINDINGS = (("precision", "in fp32 instead of bf16", ("hut",)),
                 ("paper-epochs", "with the paper's longer schedule", ("hut", "lora")),
                 ("hira-rank", "at a higher rank than the main table's HiRA", ("hira",)))


def side_lines(results: list[dict[str, Any]]) -> list[str]:
    """One finding per side-table cell: its score, paired over seeds against the main cells it exists to test."""
    main, lines = glue_cells(results), []
    for table, what, against in SIDE_FINDINGS:
        for label, row in glue_cells(results, table).items():
            for task, res in row.items():
                ours = seed_scores(res)
                parts = []
                for other in against:
                    if task not in main.get(other, {}):
                        continue
                    ref = main[other][task]
                    cmp = paired(ours, seed_scores(ref))
                    p = _p_value(cmp["p"])
                    parts.append(f"{_signed(cmp['mean'])} against {display_name(other)} at "
                                 f"{ref['settings']['epochs']:g} epochs in {ref['settings'].get('precision', 'fp32')} "
                                 f"({_score(statistics.fmean(seed_scores(ref).values()))}; {cmp['verdict']}, {p})")
                if parts:
                    s = res["settings"]
                    lines.append(f"- **{label}** ({GLUE_NAMES[task]}, {what}: {s['epochs']:g} epochs, "
                                 f"{s.get('precision', 'fp32')}): {_score(statistics.fmean(ours.values()))}, "
                                 + "; ".join(parts) + ".")
    return lines


def main_table(cells: dict[str, dict[str, dict[str, Any]]]) -> str:
    tasks = _tasks(cells)
    head = "| method | # trainable | " + " | ".join(GLUE_NAMES[t] for t in tasks) + " | Avg. |"
    rule = "|" + "---|" * (len(tasks) + 3)
    lines = [head, rule]
    for label in _ordered(cells):
        row = cells[label]
        texts, means = [], []
        for task in tasks:
            if task not in row:
                texts.append("–")
                continue
            stats = row[task]["summary"]["best"][row[task]["primary_metric"]]
            means.append(stats["mean"])
            texts.append(format_pm(stats) + ("" if stats["n"] > 1 else " (1 seed)"))
        avg = f"{100 * statistics.fmean(means):.1f}" if len(means) == len(tasks) else "–"
        params = next(iter(row.values()))["trainable_parameters"]
        lines.append(f"| {display_name(label)} | {format_params(params)} | " + " | ".join(texts) + f" | {avg} |")
    lines.append("| majority class | – | " + " | ".join(_score(MAJORITY[t]) for t in tasks) + " | – |")
    lines.append("| clearly above it (+ 2 s.e.) | – | " + " | ".join(_score(MAJORITY[t] + clear_margin(t))
                                                                   for t in tasks) + " | – |")
    lines.append("| bar (issue 11) | – | " + " | ".join(_score(TARGETS[t]) for t in tasks) + " | – |")
    paper = ["", "The paper (RoBERTa-large, 355M; published numbers, mean of 5 seeds, its own schedules per "
             "method):", "", head, rule]
    for label, (params, scores) in PAPER_TABLE1.items():
        shown = [scores[t] for t in tasks if t in scores]
        paper.append(f"| {display_name(label)} | {params} | " + " | ".join(f"{scores[t]:.1f}" for t in tasks)
                     + f" | {statistics.fmean(shown):.1f} |")
    return "\n".join(lines + paper) + "\n"


def grid_scores(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[float, float]]:
    """(task, label) -> every probed rate's seed-0 score by the sweep's own selection metric, read from the grid
    cells themselves (a grid extended after its cell finished is shown whole). E2E's task is "e2e"."""
    from ..sweep import headline

    scores: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for res in results:
        of = res["config"].get("tags", {}).get("lr_grid_of")
        if of:
            task = res["config"].get("task") or res["recipe"]
            scores[(task, of)][res["settings"]["learning_rate"]] = headline(res)
    return dict(scores)


def _rates_text(grid: dict[float, float], chosen: Optional[float]) -> str:
    """Every probed rate with its score × 100, the chosen one in bold."""
    return ", ".join(f"**{lr:g}: {_score(v)}**" if lr == chosen else f"{lr:g}: {_score(v)}"
                     for lr, v in sorted(grid.items()))


def lr_table(cells: dict[str, dict[str, dict[str, Any]]], grids: dict[tuple[str, str], dict[float, float]]) -> str:
    """Each method's chosen rate per task, with the grid's seed-0 scores (the chosen one in bold)."""
    tasks = _tasks(cells)
    lines = ["| method | " + " | ".join(GLUE_NAMES[t] for t in tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for label in _ordered(cells):
        texts = []
        for task in tasks:
            res = cells[label].get(task)
            grid = grids.get((task, label))
            if res is None or not grid:
                texts.append("–")
                continue
            texts.append(_rates_text(grid, res["settings"]["learning_rate"]))
        lines.append(f"| {display_name(label)} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def _versus(ours: str, other: str) -> str:
    return f"{display_name(ours)} − {display_name(other)}"


def _paired_cells(cmp: dict[str, Any]) -> str:
    """A paired comparison's table cells: per-seed differences, mean (95% CI), p, verdict (× 100)."""
    diffs = ", ".join(f"{s}: {_signed(d)}" for s, d in zip(cmp["seeds"], cmp["diffs"]))
    ci = "" if math.isnan(cmp["ci"]) else f" (± {cmp['ci'] * 100:.1f})"
    p = "–" if math.isnan(cmp["p"]) else f"{cmp['p']:.3f}"
    return f"{diffs} | {_signed(cmp['mean'])}{ci} | {p} | {cmp['verdict']}"


def paired_table(cells: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| task | comparison | per-seed differences | mean (95% CI) | p (paired t) | verdict |",
             "|---|---|---|---|---|---|"]
    for ours, other in COMPARISONS:
        for task in _tasks(cells):
            if task not in cells.get(ours, {}) or task not in cells.get(other, {}):
                continue
            cmp = paired(seed_scores(cells[ours][task]), seed_scores(cells[other][task]))
            lines.append(f"| {GLUE_NAMES[task]} | {_versus(ours, other)} | {_paired_cells(cmp)} |")
    return "\n".join(lines) + "\n"


def side_table(results: list[dict[str, Any]], table: str, labels: Optional[list[str]] = None) -> str:
    """A small GLUE table (precision check, longer schedules) beside the main cells of the same tasks."""
    side = glue_cells(results, table)
    if not side:
        return ""
    main = glue_cells(results)
    lines = ["| variant | task | epochs | precision | rank | lr | trainable | score (mean ± std) | tokens/s | wall time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, row in list(side.items()) + [(lab, main[lab]) for lab in (labels or []) if lab in main]:
        for task, res in row.items():
            if task not in {t for r in side.values() for t in r}:
                continue
            stats = res["summary"]["best"][res["primary_metric"]]
            speed = statistics.fmean(r.get("train_tokens_per_s", float("nan")) for r in res["seeds"])
            s = res["settings"]
            rank = s.get("method_options", {}).get("r", "–")
            lines.append(f"| {label} | {GLUE_NAMES[task]} | {s['epochs']:g} | {s.get('precision', 'fp32')} | {rank} | "
                         f"{s['learning_rate']:g} | {format_params(res['trainable_parameters'])} | {format_pm(stats)} | "
                         f"{speed:,.0f} | {wall_time(res) / 60:.0f} min |")
    return "\n".join(lines) + "\n"


def wall_time(res: dict[str, Any]) -> float:
    """Seconds the cell's seeds took to train and evaluate (reused grid seeds included)."""
    return sum(r.get("wall_time_s", 0.0) for r in res["seeds"])


def cost_lines(results: list[dict[str, Any]]) -> list[str]:
    """Wall time per sweep table, every cell counted once (grid probes included, reused seeds not twice).

    Cells run by ``hut-peft sweep --workers N`` shared the machine N ways, so their elapsed share is 1/N of
    their wall time; both sums are given.
    """
    cell_s: dict[str, float] = defaultdict(float)
    elapsed_s: dict[str, float] = defaultdict(float)
    by_label: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    # Cells whose own grid is in the same table reused its first seed; a cell that borrows a rate (lr_from), even
    # under the same label in another table, ran every seed itself.
    grids = {(table_of(r), r["config"]["tags"]["lr_grid_of"]) for r in results
             if "lr_grid_of" in r["config"].get("tags", {})}
    for res in results:
        tags = res["config"].get("tags", {})
        seeds = res["seeds"]
        selection = tags.get("lr_selection", {})
        if selection and (table_of(res), selection.get("of")) in grids:  # its grid's run of seed 0: counted there
            seeds = [r for r in seeds if r["seed"] != selection["seed"]]
        key = f"{res.get('recipe')}/{table_of(res)}"
        spent = sum(r.get("wall_time_s", 0.0) or (r.get("train_time_s", 0.0) + r.get("decode_time_s", 0.0))
                    for r in seeds)
        cell_s[key] += spent
        elapsed_s[key] += spent / tags.get("sweep_workers", 1)
        by_label[key][tags.get("lr_grid_of") or row_label(res)] += spent
    lines = []
    for k, v in sorted(cell_s.items()):
        lines.append(f"- `{k}`: {v / 3600:.2f} h of cell time" + (
            f", about {elapsed_s[k] / 3600:.2f} h elapsed (cells run by parallel sweep workers counted once per "
            "worker)" if elapsed_s[k] < v - 1 else ""))
        if len(by_label[k]) > 1:
            lines.append("  (" + ", ".join(f"{display_name(label)} {t / 3600:.2f} h"
                                           for label, t in sorted(by_label[k].items(), key=lambda kv: -kv[1])) + ")")
    return lines


def e2e_cells(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """label -> the E2E cell's results (final cells only, as for GLUE)."""
    return {row_label(r): r for r in results
            if r.get("recipe") == "e2e" and "lr_grid_of" not in r["config"].get("tags", {})}


def bleu_scores(res: dict[str, Any]) -> dict[int, float]:
    """Seed -> corpus BLEU on the dev MRs (the rate-selection metric, so also the one compared)."""
    return {r["seed"]: r["metrics"]["BLEU"] for r in res["seeds"] if "BLEU" in r.get("metrics", {})}


def e2e_verdict_line(cells: dict[str, dict[str, Any]]) -> list[str]:
    """The E2E finding: HUT against each baseline, BLEU paired over the seeds both ran."""
    parts = []
    for ours, other in COMPARISONS:
        if ours in cells and other in cells:
            cmp = paired(bleu_scores(cells[ours]), bleu_scores(cells[other]))
            parts.append(f"{_versus(ours, other)} {_signed(cmp['mean'])} ({cmp['verdict']}, "
                         f"{_p_value(cmp['p'])})")
    if not parts:
        return []
    return ["- **E2E** (SmolLM2-135M, BLEU × 100 on the same dev MRs, paired over seeds): " + "; ".join(parts) + "."]


def e2e_lr_lines(results: list[dict[str, Any]], cells: dict[str, dict[str, Any]], task: str = "e2e",
                 scale: float = 1.0) -> list[str]:
    """Each trained method's grid on a task without GLUE's columns (``e2e``, ``squad``): every rate's seed-0
    selection score × ``scale`` × 100 (BLEU is a fraction; SQuAD's F1, already × 100, takes ``scale=0.01``), the
    chosen one in bold."""
    grids = {label: {lr: v * scale for lr, v in grid.items()}
             for (where, label), grid in grid_scores(results).items() if where == task}
    return [f"- {display_name(label)}: "
            + _rates_text(grids[label], cells[label]["settings"]["learning_rate"] if label in cells else None)
            for label in _ordered(grids)]


def e2e_paired_table(cells: dict[str, dict[str, Any]]) -> str:
    lines = ["| comparison | per-seed BLEU differences | mean (95% CI) | p (paired t) | verdict |",
             "|---|---|---|---|---|"]
    for ours, other in COMPARISONS:
        if ours in cells and other in cells:
            cmp = paired(bleu_scores(cells[ours]), bleu_scores(cells[other]))
            lines.append(f"| {_versus(ours, other)} | {_paired_cells(cmp)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def e2e_table(results: list[dict[str, Any]]) -> str:
    by_label = e2e_cells(results)
    if not by_label:
        return ""
    ours = [by_label[label] for label in _ordered(by_label)]
    head = "| method | # trainable | lr | seeds | BLEU | NIST | METEOR | ROUGE-L | CIDEr |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    lines = [head, rule]
    for res in ours:
        s = res["summary"]
        lr = "–" if not res["config"].get("train", True) else f"{res['settings']['learning_rate']:g}"
        cells = e2e_score_cells(s)
        lines.append(f"| {display_name(row_label(res))} | {format_params(res['trainable_parameters'])} | "
                     f"{lr} | {len(res['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", "The paper (GPT-2 medium, E2E test set; published numbers):", "", "| method | # trainable | "
              + " | ".join(("BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr")) + " |", "|---|---|---|---|---|---|---|"]
    for label, (params, vals) in PAPER_TABLE3.items():
        bleu, nist, meteor, rouge, cider = vals
        lines.append(f"| {display_name(label)} | {params} | {bleu:.1f} | {nist:.2f} | {meteor:.1f} | {rouge:.1f} | {cider:.2f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- SQuAD
SQUAD_COMPARISONS = (("hut", "lora"), ("hut", "ia3"), ("hut", "full"))  # issue 29's three verdicts


def squad_cells(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """label -> the SQuAD cell's results (main table, final cells only)."""
    return {row_label(r): r for r in results if r.get("recipe") == "squad" and table_of(r) == "main"
            and "lr_grid_of" not in r["config"].get("tags", {})}


def f1_scores(res: dict[str, Any]) -> dict[int, float]:
    """Seed -> best-epoch F1 as a fraction (the formatters here print × 100)."""
    return {r["seed"]: r["best"]["f1"] / 100 for r in res["seeds"] if "f1" in r.get("best", {})}


def squad_verdict_line(cells: dict[str, dict[str, Any]]) -> list[str]:
    parts = []
    for ours, other in SQUAD_COMPARISONS:
        if ours in cells and other in cells:
            cmp = paired(f1_scores(cells[ours]), f1_scores(cells[other]))
            parts.append(f"{_versus(ours, other)} {_signed(cmp['mean'])} ({cmp['verdict']}, {_p_value(cmp['p'])})")
    if not parts:
        return []
    return ["- **SQuAD v1.1** (MiniLM-L6, held-out half of the dev articles, F1 paired over seeds): "
            + "; ".join(parts) + "."]


def squad_table(cells: dict[str, dict[str, Any]]) -> str:
    lines = ["| method | # trainable | lr | seeds | EM | F1 | tokens/s | cell time |", "|---|---|---|---|---|---|---|---|"]
    for label in _ordered(cells):
        res = cells[label]
        best = res["summary"]["best"]
        speed = statistics.fmean(r.get("train_tokens_per_s", float("nan")) for r in res["seeds"])
        lines.append(f"| {display_name(label)} | {format_params(res['trainable_parameters'])} | "
                     f"{res['settings']['learning_rate']:g} | {len(res['seeds'])} | "
                     f"{best['exact_match']['mean']:.1f} ± {best['exact_match']['std']:.1f} | "
                     f"{best['f1']['mean']:.1f} ± {best['f1']['std']:.1f} | {speed:,.0f} | "
                     f"{wall_time(res) / 60:.0f} min |")
    return "\n".join(lines) + "\n"


def squad_paired_table(cells: dict[str, dict[str, Any]]) -> str:
    lines = ["| comparison | per-seed F1 differences | mean (95% CI) | p (paired t) | verdict |", "|---|---|---|---|---|"]
    for ours, other in SQUAD_COMPARISONS:
        if ours in cells and other in cells:
            lines.append(f"| {_versus(ours, other)} | {_paired_cells(paired(f1_scores(cells[ours]), f1_scores(cells[other])))} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def squad_sections(results: list[dict[str, Any]], cells: dict[str, dict[str, Any]]) -> list[str]:
    """The SQuAD table, rates and paired comparisons; while no cell has finished its seeds, the grid so far."""
    every = [r for r in results if r.get("recipe") == "squad" and table_of(r) == "main"]
    if not every:
        return []
    setting = next(iter(cells.values())) if cells else every[0]
    s, seed0 = setting["settings"], setting["seeds"][0]
    parts = ["## SQuAD v1.1 (MiniLM-L6, the same questions and schedule for every method)", "",
             f"{setting['data']}; {seed0.get('train_questions', '?')} training questions "
             f"({seed0.get('train_features', '?')} windows of {s['max_length']} tokens, stride {s['doc_stride']}), "
             f"{s['epochs']:g} epoch(s), batch {s['batch_size']}, {s['precision']}; scored on "
             f"{seed0.get('eval_questions', '?')} held-out questions with the official EM / F1 (docs/squad.md). "
             "Best epoch, mean ± std over seeds.", ""]
    parts += [squad_table(cells)] if cells else [
        "No method has finished its seeds yet: the learning-rate grids (seed 0) so far are below; the sweep resumes "
        "where it stopped (docs/squad.md).", ""]
    rates = e2e_lr_lines(results, cells, task="squad", scale=0.01)
    if rates:
        heading = "Chosen learning rates (seed 0's F1 per rate; chosen in bold)" if cells else \
            "Learning-rate grids so far (seed 0's F1 per rate)"
        parts += [f"### {heading}", "", *rates, ""]
    compared = squad_paired_table(cells)
    if compared:
        parts += ["### Paired comparisons over seeds (F1)", "", compared]
    return parts


def claim_section(root: Path, output: Path) -> str:
    """The measured Figure 4 claim of a sweep folder (``<root>/explain``, written by `hut-peft explain`): its
    ``claim.md`` and the figure, linked relative to ``output``; empty when there is none."""
    import os

    claim, figure = root / "explain" / "claim.md", root / "explain" / "figure4.png"
    if not claim.is_file():
        return ""
    parts = ["## SQuAD: where the answer's attribution falls, HUT against LoRA (the paper's Figure 4, measured)", "",
             "Integrated gradients over the word embeddings for the predicted span's score, shares of |attribution| "
             "per question (docs/squad.md says why this attribution and how the questions and examples are chosen).",
             "", claim.read_text().strip(), ""]
    if figure.is_file():
        link = os.path.relpath(figure, output.parent)
        parts += [f"![Figure 4, questions chosen by the rule in docs/squad.md]({link}) (also as "
                  f"[HTML]({os.path.relpath(figure.with_suffix('.html'), output.parent)}))", ""]
    return "\n".join(parts) + "\n"


def _mean_curve(res: dict[str, Any]) -> tuple[list[int], list[float]]:
    """Epochs and the dev headline × 100 at each, averaged over the cell's seeds."""
    key = res["primary_metric"]
    per_epoch: dict[int, list[float]] = defaultdict(list)
    for record in res["seeds"]:
        for entry in record["per_epoch"]:
            if key in entry:
                per_epoch[round(entry["epoch"])].append(entry[key] * 100)
    xs = sorted(per_epoch)
    return xs, [statistics.fmean(per_epoch[x]) for x in xs]


def curves_figure(cells: dict[str, dict[str, dict[str, Any]]], path: Path,
                  longer: Optional[dict[str, dict[str, dict[str, Any]]]] = None) -> Optional[Path]:
    """Dev score per epoch (mean over seeds) per method and task: whether the schedules converged.

    ``longer`` (the paper-epochs cells) is drawn dashed in its method's colour, so the same panel shows where the
    fair schedule stopped and what more epochs gave.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _tasks(cells)
    if not tasks:
        return None
    from matplotlib.ticker import MaxNLocator

    labels = _ordered(cells)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for label in labels:
            res = cells[label].get(task)
            if res is not None:
                ax.plot(*_mean_curve(res), marker="o", ms=3, color=method_colour(label),
                        label=display_name(label))
        for row in (longer or {}).values():
            res = row.get(task)
            if res is not None:
                method = res["config"]["method"]
                ax.plot(*_mean_curve(res), marker="o", ms=3, ls="--", color=method_colour(method),
                        label=f"{display_name(method)}, {res['settings']['epochs']:g} epochs")
        ax.axhline(MAJORITY[task] * 100, color="grey", ls=":", lw=1)
        ax.set(title=GLUE_NAMES[task], xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("dev score × 100 (mean over seeds)")
    legend = {name: handle for ax in axes[0] for handle, name in zip(*ax.get_legend_handles_labels())}
    fig.tight_layout()
    # below the panels, as many columns as fit their width; "tight" grows the canvas to hold it, so nothing is cut
    fig.legend(legend.values(), legend.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
               ncol=min(len(legend), 2 * len(tasks)))
    return save_figure(fig, path, dpi=110)


def fair_sections(results: list[dict[str, Any]], curves_path: Path) -> str:
    """The page's lead: findings, then the tables, the curves and the costs; empty for runs without rate grids."""
    if not any("lr_selection" in r["config"].get("tags", {}) for r in results):
        return ""
    cells, e2e_rows, squad_rows = glue_cells(results), e2e_cells(results), squad_cells(results)
    found = [*verdict_lines(cells), *side_lines(results)] if cells else []
    found += e2e_verdict_line(e2e_rows) + squad_verdict_line(squad_rows)
    parts = ["## What was found", "", *found, ""] if found else []
    if cells:
        curves_figure(cells, curves_path, longer=glue_cells(results, "paper-epochs"))
        parts += ["## GLUE: every method with the same head, data, epochs and batch, each at its own tuned rate", "",
                  "Dev set, best epoch, mean ± std over seeds (× 100; CoLA: Matthews correlation, STS-B: Pearson, "
                  "the rest accuracy).", "", main_table(cells),
                  "### Chosen learning rates (seed 0's best-epoch score per rate; chosen in bold)", "",
                  lr_table(cells, grid_scores(results)), "### Paired comparisons over seeds", "", paired_table(cells),
                  "### Convergence: dev score per epoch", "", f"![Dev score per epoch]({curves_path.name})", ""]
        precision = side_table(results, "precision", labels=["hut"])
        if precision:
            parts += ["### bf16 autocast against fp32 (HUT at its chosen rate, same seeds)", "", precision,
                      "Compare the scores here. The speed of bf16 against fp32 is measured in one process on the same "
                      "batches in docs/glue.md; this table's tokens/s come from runs that may have shared the "
                      "machine with another sweep worker.", ""]
        longer = side_table(results, "paper-epochs", labels=["hut", "lora"])
        if longer:
            parts += ["### What the paper's longer HUT schedule alone is worth", "", longer]
        hira_rank = side_table(results, "hira-rank", labels=["hira"])
        if hira_rank:
            parts += ["### Does HiRA's rank matter? (HUT's does not: docs/method.md)", "", hira_rank]
    if e2e_rows:
        parts += ["## E2E NLG (SmolLM2-135M, the same training pairs and dev MRs for every method)", "",
                  e2e_table(results)]
        rates = e2e_lr_lines(results, e2e_rows)
        if rates:
            parts += ["### Chosen learning rates (seed 0's BLEU × 100 per rate; chosen in bold)", "", *rates, ""]
        compared = e2e_paired_table(e2e_rows)
        if compared:
            parts += ["### Paired comparisons over seeds (BLEU × 100)", "", compared]
    parts += squad_sections(results, squad_rows)
    if parts:
        parts += ["### Wall time per table (2 CPU cores)", "", *cost_lines(results), ""]
    return "\n".join(parts)
