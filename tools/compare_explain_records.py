"""How much `hut-peft explain`'s shares move between two runs over the same questions, e.g. 16 integration steps
against 64: for every (question, model, training seed) in both ``records.jsonl`` files, the absolute difference of each share, and
each run's completeness gap |Σ attributions − (f(x) − f(baseline))| / |f(x) − f(baseline)|. Where the shares barely
move while the gap shrinks, the integral's error at the fewer steps does not change what the claim measures.

    hut-peft explain --models hut=docs/results/squad-fair/main/squad/hut lora=docs/results/squad-fair/main/squad/lora \\
        --data-dir ../shared/data/squad --sample 40 --n-steps 64 --output-dir runs/explain-64
    .venv/bin/python tools/compare_explain_records.py docs/results/squad-fair/explain/records.jsonl \\
        runs/explain-64/records.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def read(path: Path) -> dict[tuple[str, str, int], dict]:
    """(question, model, training seed) -> record."""
    return {(r["id"], r["model"], r.get("seed", 0)): r for r in map(json.loads, path.read_text().splitlines()) if r}


def gap(record: dict) -> float:
    return abs(record["delta"]) / max(abs(record["target"]), 1e-6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="records.jsonl of one run (e.g. 16 steps).")
    parser.add_argument("second", type=Path, help="records.jsonl of the other run over some of the same questions.")
    args = parser.parse_args()
    a, b = read(args.first), read(args.second)
    common = sorted(set(a) & set(b))
    if not common:
        parser.error("the two files share no (question, model, seed) record")
    print(f"{len(common)} (question, model, seed) records in both")
    for key in a[common[0]]["shares"]:
        diffs = [abs(a[k]["shares"][key] - b[k]["shares"][key]) for k in common]
        print(f"share '{key}': mean |difference| {statistics.fmean(diffs):.4f}, max {max(diffs):.4f} "
              f"(mean share {statistics.fmean(a[k]['shares'][key] for k in common):.3f})")
    same = sum(a[k]["prediction"] == b[k]["prediction"] for k in common)
    print(f"same prediction: {same} of {len(common)}")
    for name, run in ((args.first, a), (args.second, b)):
        gaps = sorted(gap(run[k]) for k in common)
        print(f"{name}: completeness gap median {statistics.median(gaps):.4f}, max {gaps[-1]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
