"""Compare our BLEU and NIST (``hut_peft.lab.metrics.e2e.bleu_nist``) with the official E2E scorer's, end to end:
each case is written as two files in the official layout, read by ``measure_scores.py``'s own ``load_data``,
turned into mteval SGML files (with its padding of missing references) by its own ``run_mteval``, and scored
by its Perl ``mteval-v13a-sig.pl``. The cases: issue 11's four, then random ones from the dev set (subsets of
references, outputs cut short, shuffled, random words, empty, with '0' tokens, capitals, SGML entities).

The official script prints 4 decimals; to compare closer, the Perl runs from a copy whose final printf is
widened to 12 decimals (nothing else changes). Its COCO half (METEOR, ROUGE-L, CIDEr) is not run: its jars
are not needed here, and ours are pycocoevalcap's same code.

Needs a checkout of https://github.com/tuetschek/e2e-metrics, perl and XML::Twig (Debian: libxml-twig-perl):

    .venv/bin/python tools/check_e2e_against_official.py --official ../e2e-metrics [--random 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from hut_peft.lab.data.e2e import group_by_mr, load_e2e, read_official_refs, read_predictions
from hut_peft.lab.metrics.e2e import bleu_nist

ROOT = Path(__file__).resolve().parents[1]
EXTRA = ["0", "0 0", "CAFÉ", "Café", "&amp;", "&quot;x&quot;", "£20-25", "1,000.5", "U.S.", "ÉCOLE", "a-b", "3-4"]
Case = tuple[list[str], list[list[str]]]


def official_scorer(checkout: Path, work: Path):
    """``(refs_file, preds_file) -> (BLEU, NIST)`` through measure_scores.py's own mteval path."""
    for name in ("pycocotools", "pycocotools.coco", "pycocoevalcap", "pycocoevalcap.eval", "metrics",
                 "metrics.pymteval"):  # the COCO half and the Python mteval, not used on this path
        stub = types.ModuleType(name)
        stub.COCO = stub.COCOEvalCap = stub.BLEUScore = stub.NISTScore = None
        sys.modules[name] = stub
    sys.path.insert(0, str(checkout))
    import measure_scores

    perl = (checkout / "mteval" / "mteval-v13a-sig.pl").read_text(encoding="utf-8")
    wide = perl.replace('printf "NIST score = %2.4f  BLEU score = %.4f', 'printf "NIST score = %.12f  BLEU score = %.12f')
    if wide == perl:
        raise RuntimeError("The Perl script's final printf was not found; this check needs e2e-metrics' mteval-v13a-sig.pl.")
    (work / "mteval-v13a-sig-12.pl").write_text(wide, encoding="utf-8")
    run = subprocess.check_output

    def widened(args, **kwargs):
        return run([args[0], str(work / "mteval-v13a-sig-12.pl"), *args[2:]], **kwargs)

    def score(refs_file: Path, preds_file: Path) -> tuple[float, float]:
        src, refs, outputs = measure_scores.load_data(str(refs_file), str(preds_file))
        measure_scores.subprocess.check_output = widened
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                got = measure_scores.run_mteval(refs, outputs, src)
        finally:
            measure_scores.subprocess.check_output = run
        return got["BLEU"], got["NIST"]

    return score


def issue_cases(dev_groups: list[list[str]]) -> dict[str, Case]:
    done = ROOT / "docs" / "results" / "e2e-done-when"
    preds, refs = read_predictions(done / "predictions.txt"), read_official_refs(done / "references.txt")
    multi = [g for g in dev_groups if len(g) > 1]
    return {
        "done-when (100 MRs)": (preds, refs),
        "done-when, first 20 MRs": (preds[:20], refs[:20]),
        "done-when, first 4 references": (preds, [b[:4] for b in refs]),
        "dev set, first reference cut to 60%": (
            [" ".join(g[0].split()[:max(1, int(0.6 * len(g[0].split())))]) for g in multi], [g[1:] for g in multi]),
    }


def random_case(rng: random.Random, dev_groups: list[list[str]], vocab: list[str]) -> Case:
    preds, refs = [], []
    for group in rng.sample(dev_groups, rng.choice([2, 3, 7, 30, 120])):  # ≥ 2 MRs: 1 block reads as 1 ref/line
        block = rng.sample(group, rng.randint(1, len(group)))
        refs.append([r + " " + rng.choice(EXTRA) for r in block] if rng.random() < 0.2 else block)
        words, mode = group[0].split(), rng.random()
        if mode < 0.2:
            preds.append("")
        elif mode < 0.4:
            preds.append(" ".join(words[:rng.randint(1, len(words))]))
        elif mode < 0.55:
            preds.append(" ".join(rng.sample(words, len(words))))
        elif mode < 0.7:
            preds.append(" ".join(rng.choice(vocab + EXTRA) for _ in range(rng.randint(1, 40))))
        else:
            preds.append(rng.choice(group) + " " + rng.choice(EXTRA))
    if not any(preds):
        preds[0] = "x"  # mteval divides by the output's word count for BLEU
    return preds, refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of tuetschek/e2e-metrics")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "e2e")
    parser.add_argument("--random", type=int, default=40, help="random dev-set cases after the issue's four")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dev_groups = [refs for _, refs in group_by_mr(load_e2e("validation", args.data_dir))]
    vocab = sorted({w for g in dev_groups for r in g for w in r.split()})
    rng = random.Random(args.seed)
    cases = issue_cases(dev_groups)
    cases.update({f"random {i}": random_case(rng, dev_groups, vocab) for i in range(args.random)})
    worst = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        official = official_scorer(args.official.resolve(), work)
        for name, (preds, refs) in cases.items():
            (work / "refs.txt").write_text("\n\n".join("\n".join(b) for b in refs) + "\n", encoding="utf-8")
            (work / "preds.txt").write_text("".join(p + "\n" for p in preds), encoding="utf-8")
            theirs = official(work / "refs.txt", work / "preds.txt")
            ours = bleu_nist(read_predictions(work / "preds.txt"), read_official_refs(work / "refs.txt"))
            diffs = [abs(a - b) for a, b in zip(ours, theirs)]
            worst = [max(w, d) for w, d in zip(worst, diffs)]
            print(f"{name:38s} {len(preds):4d} MRs, {min(map(len, refs))}-{max(map(len, refs))} refs  "
                  f"official BLEU {theirs[0]:.6f} NIST {theirs[1]:.6f}  ours BLEU {ours[0]:.6f} NIST {ours[1]:.6f}")
    print(f"max |ours - official| over {len(cases)} cases: BLEU {worst[0]:.1e}, NIST {worst[1]:.1e} "
          "(the official figures carry 12 decimals)")


if __name__ == "__main__":
    main()
