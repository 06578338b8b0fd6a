"""Score committed E2E runs again from their saved outputs and rewrite their stored numbers (after a fix to
the scorer; see ``hut_peft.lab.train.e2e.rescore_results``). Prints every number that changed. Needs Java (METEOR).

    .venv/bin/python tools/rescore_e2e.py                      # every E2E results.json under docs/results
    .venv/bin/python tools/rescore_e2e.py path/to/results.json ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hut_peft.lab.train.e2e import rescore_results

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def e2e_results(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("results.json") if json.loads(p.read_text()).get("recipe") == "e2e")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path, help="E2E results.json files (default: all under docs/results)")
    paths = parser.parse_args().results or e2e_results(RESULTS)
    for path in paths:
        changes = rescore_results(path)
        print(f"{path}: {len(changes)} number(s) changed")
        for seed, metric, old, new in changes:
            print(f"  seed {seed} {metric:8s} {old:.6f} -> {new:.6f}")


if __name__ == "__main__":
    main()
