"""`hut-peft e2e-score REFS PREDS`: score two files in the challenge's layout, print the five metrics as JSON."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", help="References: each MR's references as a block of lines, blocks separated by a "
                                     "blank line (a file without blank lines has one reference per MR).")
    parser.add_argument("preds", help="Predictions: one output per line, in the order of the reference blocks.")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft e2e-score`: prints {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}."""
    from ..data.e2e import read_official_refs, read_predictions
    from .e2e import require_java, score_e2e

    refs, preds = read_official_refs(args.refs), read_predictions(args.preds)
    if len(refs) != len(preds):
        raise ValueError(f"{args.preds} has {len(preds)} predictions but {args.refs} has {len(refs)} reference "
                         "blocks: they must correspond one to one (one prediction per MR, in order).")
    try:
        require_java()  # fail before scoring, with the install hint and no traceback
    except RuntimeError as err:
        print(f"hut-peft e2e-score: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(score_e2e(preds, refs), indent=2))
    return 0
