"""The `hut-peft` command line: one sub-command per module, imported only when it runs.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; add a line to
``COMMANDS`` to register one. Modules load lazily so ``hut-peft --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "methods": ("hut_peft.methods.cli", "List the fine-tuning methods: name, what it is, source, merges, presets."),
    "glue": ("hut_peft.train.glue", "Train and evaluate a method on a GLUE task (the paper's Table 1)."),
    "sweep": ("hut_peft.sweep", "Run methods × tasks × seeds from a YAML file, skipping finished cells."),
    "e2e-score": ("hut_peft.metrics.e2e_cli", "Score E2E predictions against references (official layout), as JSON."),
    "flops": ("hut_peft.flops", "FLOPs per method: the paper's accounting, ours, and measured (flop_counter)."),
    "bench": ("hut_peft.bench", "Step time, memory, latency and mixed-batch throughput: HUT vs LoRA vs frozen."),
    "report": ("hut_peft.report", "Collect results.json files into markdown tables and the paper's Figure 3."),
    "e2e": ("hut_peft.train.e2e", "Train a causal LM on E2E NLG, decode, and score it (the paper's Table 3)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hut-peft",
        description="HUT (Hadamard Updated Transformation) for peft: train, score, measure, report.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command being run (and all of them for --help).
    if argv and argv[0] in COMMANDS:
        module_name, help_text = COMMANDS[argv[0]]
        parser = argparse.ArgumentParser(prog=f"hut-peft {argv[0]}", description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        try:
            return int(module.run(args) or 0)
        except (ValueError, FileNotFoundError, TypeError) as err:
            # Bad input: one clear line, no traceback (HUT_PEFT_DEBUG=1 shows it).
            if os.environ.get("HUT_PEFT_DEBUG"):
                raise
            print(f"hut-peft {argv[0]}: error: {err}", file=sys.stderr)
            return 2
    build_parser().parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
