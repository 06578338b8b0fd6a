"""`hut-peft explain`: the paper's Figure 4, reproducible, and its claim measured (docs/squad.md).

For a fixed random sample of held-out SQuAD questions, every model given (saved by ``hut-peft squad
--save-adapter``, or ``base``: the pretrained encoder with a new, untrained span head) answers, and integrated
gradients (``lab/attribution.py``) give each input token's share of the answer's score. Outputs, in
``--output-dir``:

- ``records.jsonl``: one line per (question, compared model, training seed): prediction, EM / F1, shares,
  completeness; resumable, a finished line is not computed again (so the models and seeds can be run one at a time,
  as each is trained);
- ``claim.json`` and ``claim.md``: for the two ``--compare`` models (each question's shares averaged over the
  ``--seeds`` explained, then each seed's pair alone), paired per question, the share on the gold
  answer and on context words that repeat the question's content words (Wilcoxon signed-rank, matched-pairs
  rank-biserial effect size), the answer share again within the questions both answer right and both answer wrong
  (a gap there is not merely one model being right more often), and per model the share on the answer when it is
  right against when it is wrong (Mann-Whitney U, rank-biserial);
- ``figure4.png`` and ``figure4.html``: questions chosen by a stated rule (in sample order, the first that only the
  first compared model answers exactly right, the first only the second does, the first both do; ``pick_examples``),
  or by ``--questions``;
  each word shaded by its share, per model, side by side.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import random
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)
SHARES = ("answer", "question_words_in_context", "question", "other_context")
BASE = "base"


def parse_models(items: list[str]) -> dict[str, str | None]:
    """``["hut=DIR", "lora=DIR", "base"]`` → ``{"hut": DIR, "lora": DIR, "base": None}``.

    Raises:
        ValueError: An item that is neither ``base`` nor ``LABEL=DIR``, or a repeated label.
    """
    models: dict[str, str | None] = {}
    for item in items:
        label, _, folder = item.partition("=")
        if item != BASE and not (label and folder):
            raise ValueError(f"--models: {item!r} is neither 'base' nor LABEL=ADAPTER_DIR (a seed-N/adapter folder "
                             "written by `hut-peft squad --save-adapter`).")
        if label in models:
            raise ValueError(f"--models: the label {label!r} is given twice.")
        models[label] = folder or None
    return models


def resolve_adapter(folder: str, seed: int = 0) -> str:
    """An adapter folder as given, or, for a sweep cell (``.../squad/hut``), the adapter of training seed ``seed``
    at its grid's best rate: seed 0 from the grid run of the highest headline among ``lr=*/results.json`` (ties to
    the smaller rate, as the sweep chooses), other seeds from the cell's own ``seed-N/adapter``.

    Raises:
        FileNotFoundError: Neither an adapter (``method.json``) nor a cell with finished grid runs, or a cell whose
            seed ``seed`` has not finished.
        ValueError: A seed other than 0 asked of a single adapter folder.
    """
    from .sweep import headline

    path = Path(folder)
    if (path / "method.json").is_file():
        if seed != 0:
            raise ValueError(f"--seeds: {folder} is one adapter (one training seed); give the sweep cell (.../squad/"
                             "hut) to explain several seeds.")
        return str(path)
    if seed != 0:
        adapter = path / f"seed-{seed}" / "adapter"
        if not (adapter / "method.json").is_file():
            raise FileNotFoundError(f"--seeds: {adapter} does not exist yet: seed {seed} of {folder} has not finished "
                                    "(the sweep trains seeds 1, 2 after the grids) or was not saved (--save-adapter).")
        return str(adapter)
    scores = {}
    for results in path.glob("lr=*/results.json"):
        res = json.loads(results.read_text())
        scores[res["settings"]["learning_rate"]] = (headline(res), results.parent)
    if not scores:
        raise FileNotFoundError(f"--models: {folder} holds neither an adapter (method.json) nor finished learning-rate "
                                "runs (lr=*/results.json) of a sweep cell.")
    best = max(sorted(scores), key=lambda lr: scores[lr][0])
    adapter = scores[best][1] / "seed-0" / "adapter"
    logger.info("%s: the grid's best rate is %g; using %s", folder, best, adapter)
    return str(adapter)


def load_model(adapter_dir: str | None, model: str | None, seed: int = 0) -> Any:
    """A QA model in fp32 eval mode: the base with its method and trained tensors loaded, or (``None``) the base with
    a span head initialised from ``seed``."""
    import torch

    from .methods.checkpoint import load_trainable
    from .models import DEFAULT_ENCODER, resolve_model
    from .train.squad import base_model

    torch.manual_seed(seed)
    qa = base_model(resolve_model(model, default=DEFAULT_ENCODER))
    if adapter_dir is not None:
        qa = load_trainable(qa, adapter_dir)
    return qa.float().eval()


def sample_questions(examples: Any, n: int, seed: int) -> list[int]:
    """Indices of a fixed random sample (``random.Random(seed)``), in sample order; all questions, shuffled, if
    ``n`` is not below their number."""
    return random.Random(seed).sample(range(len(examples)), min(n, len(examples)))


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def explain_all(runs: dict[tuple[str, int], str | None], examples: Any, order: list[int], out: Path,
                args: Any) -> list[dict]:
    """Compute (or reuse) one record per (question, model, training seed); append each to ``records.jsonl`` as it
    is made."""
    from transformers import AutoTokenizer

    from .attribution import explain_question
    from .metrics.squad import question_scores
    from .models import DEFAULT_ENCODER, resolve_model

    path = out / "records.jsonl"
    records = read_records(path)
    done = {(r["id"], r["model"], r.get("seed", 0)) for r in records}
    source = resolve_model(args.model, default=DEFAULT_ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    out.mkdir(parents=True, exist_ok=True)
    for (label, seed), folder in runs.items():
        todo = [i for i in order if (examples[i]["id"], label, seed) not in done]
        if not todo:
            continue
        model = load_model(folder, args.model, args.seed)
        logger.info("%s (seed %d): %d questions to explain", label, seed, len(todo))
        with path.open("a") as handle:
            for n, i in enumerate(todo):
                example = examples[i]
                e = explain_question(model, tokenizer, example, args.max_length, args.doc_stride, n_steps=args.n_steps)
                em, f1 = question_scores(e.prediction, example["answers"]["text"])
                record = {"id": example["id"], "model": label, "seed": seed, "prediction": e.prediction,
                          "exact_match": em, "f1": f1, "shares": e.shares, "target": e.target, "delta": e.delta}
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                records.append(record)
                if n % 50 == 0:
                    logger.info("%s (seed %d): %d/%d", label, seed, n, len(todo))
    return records


def seed_means(records: list[dict], seeds: list[int]) -> list[dict]:
    """One record per (question, model) holding every seed in ``seeds``: shares, EM and F1 averaged over them (EM 1:
    right on every seed, 0: wrong on every seed), the largest completeness gap kept. One seed: its records."""
    import statistics

    groups: dict[tuple[str, str], dict[int, dict]] = {}
    for r in records:
        if r.get("seed", 0) in seeds:
            groups.setdefault((r["id"], r["model"]), {})[r.get("seed", 0)] = r
    out = []
    for (qid, label), by_seed in groups.items():
        if len(by_seed) < len(seeds):
            continue
        rows = list(by_seed.values())
        worst = max(rows, key=lambda r: abs(r["delta"]) / max(abs(r["target"]), 1e-6))
        out.append({"id": qid, "model": label, "exact_match": statistics.fmean(r["exact_match"] for r in rows),
                    "f1": statistics.fmean(r["f1"] for r in rows), "target": worst["target"], "delta": worst["delta"],
                    "shares": {k: statistics.fmean(r["shares"][k] for r in rows) for k in rows[0]["shares"]}})
    return out


def _rank_biserial_paired(diffs: list[float]) -> float:
    """Matched-pairs rank-biserial correlation: (R+ − R−) / (R+ + R−) over the ranks of the non-zero |d|."""
    from scipy.stats import rankdata

    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return 0.0
    ranks = rankdata([abs(d) for d in nonzero])
    plus = sum(r for r, d in zip(ranks, nonzero) if d > 0)
    minus = sum(r for r, d in zip(ranks, nonzero) if d < 0)
    return float((plus - minus) / (plus + minus))


def _paired(xa: list[float], xb: list[float], a: str, b: str) -> dict[str, Any]:
    """``a`` against ``b`` paired per question: means, medians, the Wilcoxon signed-rank test (two-sided) and the
    matched-pairs rank-biserial effect size (+1: ``a`` higher on every question)."""
    import statistics

    from scipy.stats import wilcoxon

    diffs = [x - y for x, y in zip(xa, xb)]
    test = wilcoxon(xa, xb) if any(diffs) else None
    return {"n": len(diffs), f"mean_{a}": statistics.fmean(xa), f"mean_{b}": statistics.fmean(xb),
            f"median_{a}": statistics.median(xa), f"median_{b}": statistics.median(xb),
            "median_difference": statistics.median(diffs), "mean_difference": statistics.fmean(diffs),
            f"share_of_questions_{a}_higher": sum(d > 0 for d in diffs) / len(diffs),
            "wilcoxon_statistic": float(test.statistic) if test else None,
            "p_value": float(test.pvalue) if test else 1.0, "rank_biserial": _rank_biserial_paired(diffs)}


def paired_claim(records: list[dict], a: str, b: str, order_ids: list[str]) -> dict[str, Any]:
    """``a`` against ``b`` per question on each share; the answer share again within the questions both answer right
    and both answer wrong (so a gap is not merely one model being right more often); and, per model, the answer
    share when right against when wrong (Mann-Whitney U, rank-biserial)."""
    import statistics

    from scipy.stats import mannwhitneyu

    by = {(r["id"], r["model"]): r for r in records}
    ids = [q for q in order_ids if (q, a) in by and (q, b) in by]
    if len(ids) < 5:
        raise ValueError(f"--compare {a},{b}: only {len(ids)} questions have records for both; need at least 5.")
    out: dict[str, Any] = {"models": [a, b], "questions": len(ids), "shares": {}, "answer_share_by_outcome": {},
                           "correct_vs_wrong": {}, "scores": {}}
    for key in ("answer", "question_words_in_context", "question"):
        out["shares"][key] = _paired([by[(q, a)]["shares"][key] for q in ids],
                                     [by[(q, b)]["shares"][key] for q in ids], a, b)
    for outcome, right in (("both_right", 1.0), ("both_wrong", 0.0)):
        same = [q for q in ids if by[(q, a)]["exact_match"] == by[(q, b)]["exact_match"] == right]
        if len(same) >= 5:
            out["answer_share_by_outcome"][outcome] = _paired([by[(q, a)]["shares"]["answer"] for q in same],
                                                              [by[(q, b)]["shares"]["answer"] for q in same], a, b)
    for label in (a, b):
        rows = [by[(q, label)] for q in ids]
        out["scores"][label] = {"exact_match": 100 * statistics.fmean(r["exact_match"] for r in rows),
                                "f1": 100 * statistics.fmean(r["f1"] for r in rows),
                                "max_relative_delta": max(abs(r["delta"]) / max(abs(r["target"]), 1e-6) for r in rows)}
        right = [r["shares"]["answer"] for r in rows if r["exact_match"] == 1]
        wrong = [r["shares"]["answer"] for r in rows if r["exact_match"] == 0]
        entry: dict[str, Any] = {"n_correct": len(right), "n_wrong": len(wrong)}
        if right and wrong:
            test = mannwhitneyu(right, wrong, alternative="two-sided")
            entry.update(median_correct=statistics.median(right), median_wrong=statistics.median(wrong),
                         mann_whitney_u=float(test.statistic), p_value=float(test.pvalue),
                         rank_biserial=float(2 * test.statistic / (len(right) * len(wrong)) - 1))
        out["correct_vs_wrong"][label] = entry
    return out


def weight_summaries(runs: dict[tuple[str, int], str | None], model: str | None) -> dict[str, dict[int, dict]]:
    """Per compared model and training seed, how far its adapter moved W0 (`hut-peft weights`' statistics over the
    attention query and value matrices): the paper credits Figure 4 to HUT keeping W_new correlated with W0."""
    from .models import DEFAULT_ENCODER, resolve_model
    from .train.squad import base_model
    from .weights import summarise, update_stats

    source = resolve_model(model, default=DEFAULT_ENCODER)
    out: dict[str, dict[int, dict]] = {}
    for (label, seed), folder in runs.items():
        if folder is not None:
            out.setdefault(label, {})[seed] = summarise(update_stats(lambda: base_model(source), folder))
    return out


def _paired_text(s: dict[str, Any], a: str) -> str:
    return (f"median {s['median_difference']:+.3f}, {a} higher on {100 * s[f'share_of_questions_{a}_higher']:.0f}%, "
            f"p = {s['p_value']:.2g}, r = {s['rank_biserial']:+.2f}")


def claim_markdown(claim: dict[str, Any], command: str) -> str:
    """The claim as a short markdown section (numbers only from ``claim``)."""
    a, b = claim["models"]
    names = {"answer": "gold answer span", "question_words_in_context": "context words repeating the question's "
             "content words", "question": "the question itself"}
    seeds = claim.get("seeds", [0])
    over = f", each model's shares averaged over training seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
    lines = [f"Paired over {claim['questions']} held-out questions{over} (`{command}`):", "",
             f"| share of attribution on | {a} (mean) | {b} (mean) | median {a} − {b} | {a} higher on | Wilcoxon p "
             "| rank-biserial r |", "|---|---|---|---|---|---|---|"]
    outcomes = {"both_right": "gold answer span, questions both answer right",
                "both_wrong": "gold answer span, questions both answer wrong"}
    rows = [(names[k], s) for k, s in claim["shares"].items()]
    rows += [(f"{outcomes[k]} ({s['n']})", s) for k, s in claim.get("answer_share_by_outcome", {}).items()]
    for name, s in rows:
        lines.append(f"| {name} | {s[f'mean_{a}']:.3f} | {s[f'mean_{b}']:.3f} | {s['median_difference']:+.3f} "
                     f"| {100 * s[f'share_of_questions_{a}_higher']:.0f}% | {s['p_value']:.2g} | "
                     f"{s['rank_biserial']:+.2f} |")
    lines += ["", "| model | EM | F1 | answer share, correct (median) | answer share, wrong (median) | n right / wrong "
              "| Mann-Whitney p | rank-biserial r |", "|---|---|---|---|---|---|---|---|"]
    for label in (a, b):
        c, s = claim["correct_vs_wrong"][label], claim["scores"][label]
        if "median_correct" in c:
            lines.append(f"| {label} | {s['exact_match']:.1f} | {s['f1']:.1f} | {c['median_correct']:.3f} | "
                         f"{c['median_wrong']:.3f} | {c['n_correct']} / {c['n_wrong']} | {c['p_value']:.2g} | "
                         f"{c['rank_biserial']:+.2f} |")
    if len(seeds) > 1:
        lines += ["", "EM, F1 and the shares are means over the training seeds; a question counts as answered right "
                  "(or wrong) when it is so on every seed."]
    per_seed = claim.get("per_seed", {})
    if per_seed:
        lines += ["", f"Each training seed's pair alone ({a} seed s against {b} seed s), share on the gold answer span "
                  "(all questions; those both answer right; those both answer wrong):", ""]
        for seed, by in per_seed.items():
            parts = [f"all: {_paired_text(by['answer'], a)}"]
            parts += [f"{name} ({by[key]['n']}): {_paired_text(by[key], a)}"
                      for key, name in (("both_right", "both right"), ("both_wrong", "both wrong")) if key in by]
            lines.append(f"- seed {seed}: " + "; ".join(parts))
    weights = claim.get("weights", {})
    if weights:
        lines += ["", "How far each model moved W0 (attention query and value matrices, merged in float64; "
                  "`hut-peft weights`' statistics; per training seed " + ", ".join(map(str, seeds)) + "): "
                  + "; ".join(f"{label}: Pearson(W0, W_new) " + " / ".join(f"{w['pearson']:.4f}" for w in by.values())
                              + ", ‖ΔW‖ / ‖W0‖ " + " / ".join(f"{w['rel_change']:.4f}" for w in by.values())
                              for label, by in weights.items()) + "."]
    return "\n".join(lines) + "\n"


def pick_examples(records: list[dict], a: str, b: str, order_ids: list[str], k: int) -> list[str]:
    """The rule: in sample order, the first question only ``a`` answers exactly right, the first only ``b`` does,
    the first both do; then the second of each, and so on, until ``k`` (a kind with none left is skipped). Both
    directions are shown, the paper's and its reverse, beside a question neither gets wrong."""
    by = {(r["id"], r["model"]): r for r in records}
    kinds: dict[tuple[bool, bool], list[str]] = {(True, False): [], (False, True): [], (True, True): []}
    for q in order_ids:
        if (q, a) in by and (q, b) in by:
            kind = (bool(by[(q, a)]["exact_match"]), bool(by[(q, b)]["exact_match"]))
            if kind in kinds:  # both wrong: not drawn
                kinds[kind].append(q)
    picked: list[str] = []
    for rank in range(len(order_ids)):
        for ids in kinds.values():
            if rank < len(ids) and len(picked) < k:
                picked.append(ids[rank])
    return picked


def _color(share: float, top: float) -> tuple[float, float, float, float]:
    return (0.85, 0.1, 0.1, min(1.0, share / top) if top > 0 else 0.0)


def render(panels: list[dict[str, Any]], png: Path, page: Path, words_around: int = 40) -> None:
    """Draw each (question, model) panel's words shaded by share: a PNG (context cut to ``words_around`` words
    each side of the gold answer) and an HTML page (whole windows). Gold answer words are underlined, the predicted
    answer is boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # x in character cells of the monospace font: 16 in = 1,152 pt, a cell 0.602 em of 8 pt
    width_chars, line_h, cells = 228, 1.0, 1152 / (0.602 * 8)
    layouts = []
    for panel in panels:
        words = panel["words"]
        gold = [i for i, w in enumerate(words) if w["answer"]]
        context = [i for i, w in enumerate(words) if w["kind"] == "context"]
        lo = max(context[0], (gold[0] if gold else context[0]) - words_around) if context else 0
        hi = min(context[-1], (gold[-1] if gold else context[0]) + words_around) if context else -1
        shown = [w for i, w in enumerate(words) if w["kind"] == "question" or lo <= i <= hi]
        lines, line, used = [], [], 0
        for w in shown:
            if not (w["glued"] and line):
                used += 1 if line else 0
            if used + len(w["text"]) > width_chars and line:
                lines.append(line)
                line, used = [], 0
            line.append((used, w))
            used += len(w["text"])
        lines.append(line)
        layouts.append(lines)
    total_lines = sum(len(lines) + 2.5 for lines in layouts)
    fig = plt.figure(figsize=(16, 0.22 * total_lines + 0.5))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1, cells - 1)
    ax.set_ylim(total_lines, 0)
    ax.axis("off")
    y = 0.5
    for panel, lines in zip(panels, layouts):
        top = max(w["share"] for w in panel["words"]) or 1.0
        mark = "right" if panel["exact_match"] else "wrong"
        ax.text(-0.5, y, f"{panel['model']} · {panel['id']} · predicted: “{panel['prediction']}” ({mark}) · gold: "
                      f"“{panel['gold']}”", fontsize=8, weight="bold", va="center")
        y += line_h * 1.3
        for line in lines:
            for x, w in line:
                box = {"facecolor": _color(w["share"], top), "edgecolor": "black" if w["predicted"] else "none",
                       "pad": 1.0, "linewidth": 0.6}
                ax.text(x, y, w["text"], family="monospace", fontsize=8, va="center", bbox=box,
                        style="italic" if w["kind"] == "question" else "normal",
                        **({"color": "navy", "weight": "bold"} if w["answer"] else {}))
            y += line_h
        y += line_h * 1.2
    fig.savefig(png, dpi=130)
    plt.close(fig)
    parts = ["<!doctype html><meta charset='utf-8'><title>SQuAD attributions (Figure 4)</title>",
             "<style>body{font-family:sans-serif;max-width:70em}span{padding:1px 2px;line-height:1.9}"
             ".gold{text-decoration:underline;font-weight:bold;color:navy}.pred{outline:1px solid black}"
             ".q{font-style:italic}</style>",
             "<p>Each word shaded by its share of |integrated-gradient attribution| to the predicted span's score "
             "(darkest = the panel's largest share); gold answer underlined, predicted answer boxed, question in "
             "italics.</p>"]
    for panel in panels:
        top = max(w["share"] for w in panel["words"]) or 1.0
        mark = "right" if panel["exact_match"] else "wrong"
        parts.append(f"<h3>{html.escape(panel['model'])} · {html.escape(panel['id'])}</h3><p>predicted "
                     f"“{html.escape(panel['prediction'])}” ({mark}); gold “{html.escape(panel['gold'])}”</p><p>")
        for w in panel["words"]:
            classes = " ".join(c for c, on in (("gold", w["answer"]), ("pred", w["predicted"]),
                                               ("q", w["kind"] == "question")) if on)
            alpha = min(1.0, w["share"] / top)
            parts.append(f"<span class='{classes}' style='background:rgba(217,26,26,{alpha:.2f})' "
                         f"title='{w['share']:.4f}'>{html.escape(w['text'])}</span> ")
        parts.append("</p>")
    write_text_atomic(page, "\n".join(parts) + "\n")


def figure_panels(models: dict[str, str | None], examples: Any, ids: list[str], args: Any) -> list[dict]:
    """Explain the chosen questions again, keeping the words, for every model."""
    from transformers import AutoTokenizer

    from .attribution import explain_question, words
    from .metrics.squad import question_scores
    from .models import DEFAULT_ENCODER, resolve_model

    source = resolve_model(args.model, default=DEFAULT_ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(source.path, **source.kwargs())
    index = {qid: i for i, qid in enumerate(examples["id"])}
    missing = [q for q in ids if q not in index]
    if missing:
        raise ValueError(f"--questions: {', '.join(missing)} not among the evaluated questions.")
    panels = []
    for label, folder in models.items():
        model = load_model(folder, args.model, args.seed)
        for q in ids:
            example = examples[index[q]]
            e = explain_question(model, tokenizer, example, args.max_length, args.doc_stride, n_steps=args.n_steps)
            panels.append({"model": label, "id": q, "prediction": e.prediction,
                           "exact_match": question_scores(e.prediction, example["answers"]["text"])[0],
                           "gold": example["answers"]["text"][0], "words": words(e, example)})
    order = {label: n for n, label in enumerate(models)}
    return sorted(panels, key=lambda p: (ids.index(p["id"]), order[p["model"]]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", required=True,
                        help="LABEL=DIR: a seed-N/adapter folder of `hut-peft squad --save-adapter`, or a sweep cell "
                             "(.../squad/hut: the seed-0 adapter of its grid's best rate); or 'base' (the pretrained "
                             "encoder, untrained span head), e.g. hut=... lora=... base.")
    parser.add_argument("--model", help="The base model the adapters were trained on (default: minilm).")
    parser.add_argument("--data-dir", help="Release folder (default: the hub); the held-out split is explained.")
    parser.add_argument("--sample", type=int, default=500, help="Questions in the fixed random sample (default 500).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the sample and of base's span head.")
    parser.add_argument("--seeds", default="0",
                        help="Training seeds explained per sweep cell (e.g. 0,1,2): the claim pairs each question's "
                             "shares averaged over them; the figure draws seed 0.")
    parser.add_argument("--compare", default="hut,lora", help="The two labels compared per question.")
    parser.add_argument("--questions", help="Comma-separated question ids for the figure (default: the rule).")
    parser.add_argument("--figure-questions", type=int, default=3, help="How many questions the rule picks.")
    parser.add_argument("--n-steps", type=int, default=32, help="Integration steps (Gauss-Legendre).")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--output-dir", default="runs/explain", help="Where records, claim and figure go.")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft explain`."""
    import sys

    from .data.squad import load_squad
    from .train.common import parse_seeds

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    given = parse_models(args.models)
    a, _, b = args.compare.partition(",")
    if not (a and b):
        raise ValueError(f"--compare must be two labels, LABEL_A,LABEL_B; got {args.compare!r}.")
    if args.sample < 1 or args.n_steps < 2:
        raise ValueError(f"--sample must be >= 1 and --n-steps >= 2, got {args.sample} and {args.n_steps}.")
    seeds = parse_seeds(args.seeds)
    models = {label: resolve_adapter(folder) if folder else None for label, folder in given.items()}  # the figure's
    # Records (the claim's data) for the compared models only, every training seed; the others (base): the figure.
    runs = {(label, seed): resolve_adapter(folder, seed) for label, folder in given.items() if label in (a, b)
            for seed in seeds if folder}
    out = Path(args.output_dir)
    examples = load_squad(args.data_dir, "validation")
    order = sample_questions(examples, args.sample, args.seed)
    order_ids = [examples[i]["id"] for i in order]
    records = explain_all(runs, examples, order, out, args)
    if a not in models or b not in models:  # one model's records now, the claim once the other is given too
        print(f"{out / 'records.jsonl'}: {len(records)} records; the claim needs both --compare labels ({a}, {b}).")
        return 0
    command = "hut-peft explain " + " ".join(sys.argv[2:])
    claim = paired_claim(seed_means(records, seeds), a, b, order_ids)
    if len(seeds) > 1:  # each training seed's pair alone: does the direction hold on every one?
        claim["per_seed"] = {}
        for seed in seeds:
            alone = paired_claim(seed_means(records, [seed]), a, b, order_ids)
            claim["per_seed"][seed] = {"answer": alone["shares"]["answer"], **alone["answer_share_by_outcome"]}
    claim.update(sample=args.sample, seed=args.seed, seeds=seeds, n_steps=args.n_steps, models=[a, b],
                 adapters={f"{label} seed {seed}": folder for (label, seed), folder in runs.items()},
                 weights=weight_summaries(runs, args.model))
    write_json_atomic(out / "claim.json", claim)
    write_text_atomic(out / "claim.md", claim_markdown(claim, command))
    ids = args.questions.split(",") if args.questions else pick_examples(
        seed_means(records, [0]), a, b, order_ids, args.figure_questions)
    if ids:
        render(figure_panels(models, examples, ids, args), out / "figure4.png", out / "figure4.html")
    print((out / "claim.md").read_text())
    print(f"figure: {out / 'figure4.png'}, {out / 'figure4.html'} ({', '.join(ids) or 'no question fits the rule'})")
    return 0
