"""`hut-peft methods`: list the registry."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", action="store_true", help="Print a markdown table.")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft methods`."""
    from . import METHODS

    rows = [(m.name, m.description, m.source, "yes" if m.merges else "no", f"{m.default_lr:g}",
             ", ".join(m.presets) or "–") for m in METHODS.values()]
    head = ("name", "description", "source", "merges", "default lr", "presets")
    if args.markdown:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return 0
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for row in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0
