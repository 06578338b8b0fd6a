"""Compare our SQuAD v1.1 EM / F1 (``hut_peft.lab.metrics.squad``) with the release's own ``evaluate-v1.1.py``,
run unchanged as a separate process on files in the official layout.

For each ``seed-N/predictions.json`` under the folders given (a sweep's cells, or a single run), the held-out
questions it answers are written as an official dataset file (``{"version": "1.1", "data": [...]}``, the articles,
paragraphs and gold answers of ``--data-dir``'s evaluation split, keeping only those questions, so the script's
"unanswered question" zeros do not apply), the script scores the predictions file, and the result is compared with
the run's own ``metrics.json`` (final epoch) and with our metric on the same two files. Each file is scored again
after perturbations that walk the normalisation's corners (upper case, punctuation, articles, surrounding spaces,
emptied answers), so more than the recipe's own predictions is checked.

The script is not vendored (its licence is not stated); download it from the SQuAD site or any copy of the release:

    .venv/bin/python tools/check_squad_against_official.py --official evaluate-v1.1.py \\
        --data-dir ../shared/data/squad docs/results/squad-fair
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from hut_peft.lab.data.squad import flatten, load_squad_articles
from hut_peft.lab.metrics.squad import squad_scores
from hut_peft.lab.train.squad import references

PERTURBATIONS = {
    "as predicted": lambda text, rng: text,
    "upper case": lambda text, rng: text.upper(),
    "punctuation around": lambda text, rng: f'"{text}."',
    "articles added": lambda text, rng: f"The {text}, a an",
    "spaces around": lambda text, rng: f"  {text}\t ",
    "one in five emptied": lambda text, rng: "" if rng.random() < 0.2 else text,
    "last word dropped": lambda text, rng: " ".join(text.split()[:-1]),
}


def official_dataset(articles: list[dict], ids: set[str]) -> dict:
    """The articles cut to the questions in ``ids`` (empty paragraphs and articles dropped), in the release layout."""
    data = []
    for article in articles:
        paragraphs = [{"context": p["context"], "qas": [qa for qa in p["qas"] if qa["id"] in ids]}
                      for p in article["paragraphs"]]
        paragraphs = [p for p in paragraphs if p["qas"]]
        if paragraphs:
            data.append({"title": article["title"], "paragraphs": paragraphs})
    return {"version": "1.1", "data": data}


def official_scores(script: Path, dataset_file: Path, predictions_file: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(script), str(dataset_file), str(predictions_file)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, type=Path, help="The release's evaluate-v1.1.py.")
    parser.add_argument("--data-dir", required=True, help="The release folder the runs evaluated on.")
    parser.add_argument("folders", nargs="+", type=Path, help="Runs or sweep folders holding seed-N/predictions.json.")
    args = parser.parse_args()
    articles = load_squad_articles(args.data_dir, "validation")
    gold = references(flatten(articles))
    files = sorted(f for folder in args.folders for f in folder.rglob("seed-*/predictions.json"))
    if not files:
        parser.error(f"no seed-N/predictions.json under {', '.join(map(str, args.folders))}")
    worst, checked = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n, path in enumerate(files):
            predictions = json.loads(path.read_text())
            unknown = set(predictions) - set(gold)
            if unknown:
                raise SystemExit(f"{path}: {len(unknown)} ids not in {args.data_dir}'s evaluation split")
            dataset_file = work / "dataset.json"
            dataset_file.write_text(json.dumps(official_dataset(articles, set(predictions))))
            golds = {q: gold[q] for q in predictions}
            recorded = json.loads((path.parent / "metrics.json").read_text())["final"]
            rng = random.Random(n)
            for name, change in PERTURBATIONS.items():
                changed = {q: change(text, rng) for q, text in predictions.items()}
                (work / "predictions.json").write_text(json.dumps(changed))
                theirs = official_scores(args.official, dataset_file, work / "predictions.json")
                ours = squad_scores(changed, golds)
                gaps = [abs(theirs[k] - ours[k]) for k in ("exact_match", "f1")]
                if name == "as predicted":
                    gaps += [abs(theirs[k] - recorded[k]) for k in ("exact_match", "f1")]
                worst, checked = max(worst, *gaps), checked + 1
                print(f"{path.parent.relative_to(path.parents[3])} | {name:>19} | official EM {theirs['exact_match']:7.3f} "
                      f"F1 {theirs['f1']:7.3f} | ours EM {ours['exact_match']:7.3f} F1 {ours['f1']:7.3f}"
                      + (f" | metrics.json F1 {recorded['f1']:7.3f}" if name == "as predicted" else ""))
    print(f"{len(files)} predictions files × {len(PERTURBATIONS)} variants = {checked} scorings; "
          f"largest |official − ours| = {worst:.2e}")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
