"""The `hut-peft` command line: one sub-command per module, imported only when it runs.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; add a line to
``COMMANDS`` to register one. Modules load lazily so ``hut-peft --help`` stays fast, and so a command whose
extra is not installed fails with one line naming the extra (``pip install 'hut-peft[experiments]'``) while
the library and the other commands keep working.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

EXPERIMENTS = "experiments"
SERVE = "serve|serve-cpu"  # either extra: vLLM itself (GPUs) or its CPU build

# name -> (module, the extra it needs, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "methods": ("hut_peft.lab.methods.cli", EXPERIMENTS,
                "List the fine-tuning methods: name, what it is, source, merges, presets."),
    "glue": ("hut_peft.lab.train.glue", EXPERIMENTS, "Train and evaluate a method on a GLUE task (the paper's Table 1)."),
    "sweep": ("hut_peft.lab.sweep", EXPERIMENTS, "Run methods × tasks × seeds from a YAML file, skipping finished cells."),
    "e2e-score": ("hut_peft.lab.metrics.e2e_cli", EXPERIMENTS,
                  "Score E2E predictions against references (official layout), as JSON."),
    "flops": ("hut_peft.lab.flops", EXPERIMENTS, "FLOPs per method: the paper's accounting, ours, and measured (flop_counter)."),
    "bench": ("hut_peft.lab.bench.run", EXPERIMENTS,
              "Step time, memory, latency and mixed-batch throughput: HUT vs LoRA vs frozen."),
    "report": ("hut_peft.lab.report.build", EXPERIMENTS,
               "Collect results.json files into markdown tables and the paper's Figure 3."),
    "weights": ("hut_peft.lab.weights", EXPERIMENTS,
                "Correlation of W0 and the merged W_new, relative change and rank of the update, from saved adapters."),
    "squad": ("hut_peft.lab.train.squad", EXPERIMENTS,
              "Train and evaluate a method on SQuAD v1.1 extractive QA; official EM/F1 and predictions file."),
    "explain": ("hut_peft.lab.explain", EXPERIMENTS,
                "SQuAD Figure 4: words shaded by integrated-gradient attribution per model; the claim, paired."),
    "e2e": ("hut_peft.lab.train.e2e", EXPERIMENTS, "Train a causal LM on E2E NLG, decode, and score it (the paper's Table 3)."),
    "tenants": ("hut_peft.lab.tenants", EXPERIMENTS,
                "Train one HUT adapter per tenant of a dataset in one joint run, each equal to its own run."),
    "serve": ("hut_peft.lab.serve", SERVE,
              "Serve a base model and a folder of HUT (and LoRA) adapters with vLLM's OpenAI server."),
}


class MissingExtraError(Exception):
    """A command's extra is not installed: the message is the one line the user sees."""


def missing_distributions(extra: str) -> list[str]:
    """The packages of hut-peft's ``extra`` that are not installed (none when hut-peft runs uninstalled, from source)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requirements = [Requirement(r) for r in metadata.requires("hut-peft") or []]
    except metadata.PackageNotFoundError:
        return []
    missing = []
    for req in requirements:
        if req.marker is None or not req.marker.evaluate({"extra": extra}) or req.name == "hut-peft":
            continue
        try:
            metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(req.name)
    return missing


def missing_for(extras: str) -> list[str]:
    """What is missing for ``extras`` (``"a|b"``: either one will do; then the shorter list is reported)."""
    return min((missing_distributions(extra) for extra in extras.split("|")), key=len)


def missing_extra(command: str, extras: str, missing: str) -> MissingExtraError:
    """The one-line error for ``command`` run without its extra (``missing``: what is not there)."""
    names = " or ".join(f"'{extra}'" for extra in extras.split("|"))
    installs = " or ".join(f"pip install 'hut-peft[{extra}]'" for extra in extras.split("|"))
    return MissingExtraError(f"hut-peft {command}: needs the {names} extra ({missing} not installed); "
                             f"install it with: {installs}")


def _module_missing(command: str, extra: str, err: ModuleNotFoundError) -> MissingExtraError:
    """``err`` as a missing extra, or ``err`` itself re-raised when hut_peft's own module is missing (a broken install)."""
    if (err.name or "").split(".")[0] == "hut_peft":
        raise err
    return missing_extra(command, extra, f"module {err.name!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hut-peft",
        description="HUT (Hadamard Updated Transformation) for peft: train, score, measure, report.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    absent = {extra: bool(missing_for(extra)) for _, extra, _ in COMMANDS.values()}
    for name, (module_name, extra, help_text) in COMMANDS.items():
        if absent[extra]:  # list the command, but import nothing it cannot import
            help_text += f" [needs: pip install 'hut-peft[{extra.split('|')[0]}]']"
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if not absent[extra]:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command being run (and all of them for --help).
    if argv and argv[0] in COMMANDS:
        module_name, extra, help_text = COMMANDS[argv[0]]
        try:
            return _run_command(argv, module_name, extra, help_text)
        except MissingExtraError as err:
            print(err, file=sys.stderr)
            return 2
    build_parser().parse_args(argv)
    return 2


def _leave_process_group() -> None:
    """Under ``accelerate launch``: wait for every rank, then close the process group before the interpreter exits.

    A rank that exits first, with gloo's threads still up, can abort ("terminate called without an active
    exception") and fail the launch. Only after success: a barrier after a failure would wait for the dead rank.
    """
    dist = sys.modules.get("torch.distributed")  # never imports torch for commands that did not
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _run_command(argv: list[str], module_name: str, extra: str, help_text: str) -> int:
    """Parse and run one sub-command; a missing extra becomes a ``MissingExtraError``, before any work starts."""
    absent = missing_for(extra)
    if absent:
        raise missing_extra(argv[0], extra, ", ".join(absent))
    parser = argparse.ArgumentParser(prog=f"hut-peft {argv[0]}", description=help_text)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise _module_missing(argv[0], extra, err) from None
    module.add_arguments(parser)
    rest, passthrough = argv[1:], []
    if getattr(module, "PASSES_THROUGH", False) and "--" in rest:  # `hut-peft serve ... -- <vllm flags>`
        rest, passthrough = rest[: rest.index("--")], rest[rest.index("--") + 1:]
    args = parser.parse_args(rest)
    args.passthrough = passthrough
    try:
        code = int(module.run(args) or 0)
        _leave_process_group()
        return code
    except ModuleNotFoundError as err:  # an extra installed in part: a lazy import inside the command failed
        raise _module_missing(argv[0], extra, err) from None
    except (ValueError, FileNotFoundError, TypeError) as err:
        # Bad input: one clear line, no traceback (HUT_PEFT_DEBUG=1 shows it).
        if os.environ.get("HUT_PEFT_DEBUG"):
            raise
        print(f"hut-peft {argv[0]}: error: {err}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
