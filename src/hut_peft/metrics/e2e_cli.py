"""`hut-peft e2e-score REFS PREDS`: score two files in the challenge's layout, print JSON."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", help="References: each MR's references as a block, blocks separated by a blank line.")
    parser.add_argument("preds", help="Predictions: one output per line, in the order of the reference blocks.")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft e2e-score`."""
    from ..data.e2e import read_official_refs, read_predictions
    from .e2e import score_e2e

    refs, preds = read_official_refs(args.refs), read_predictions(args.preds)
    if len(refs) != len(preds):
        raise ValueError(f"{args.preds} has {len(preds)} predictions but {args.refs} has {len(refs)} reference "
                         "blocks: they must correspond one to one.")
    print(json.dumps(score_e2e(preds, refs), indent=2))
    return 0
