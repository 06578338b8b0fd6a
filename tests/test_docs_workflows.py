"""docs/workflows.md runs as written: every ``python`` block, section by section, top to bottom.

The blocks share one namespace and one working folder, as a reader pasting them in order would; a section
that needs an optional package skips with the reason when it is missing. In the default run ``torch.compile``
uses the ``aot_eager`` backend (the same graph capture and autograd, without inductor's code generation, which
takes minutes on a busy 2-core CPU); the slow run executes the page exactly as written.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path

import pytest
import torch

PAGE = Path(__file__).resolve().parents[1] / "docs" / "workflows.md"
NEEDS = {"TRL": "trl", "4-bit and 8-bit bases (QLoRA-style)": "bitsandbytes"}
pytestmark = pytest.mark.filterwarnings("ignore:MatMul8bitLt", "ignore::UserWarning")


def sections(text: str) -> list[tuple[str, str]]:
    """``(heading, code)`` per ``## `` section that has python blocks, the blocks joined in page order."""
    out = []
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        heading = part.splitlines()[0].strip()
        blocks = re.findall(r"^```python\n(.*?)^```", part, flags=re.M | re.S)
        if blocks:
            out.append((heading, "\n".join(blocks)))
    return out


SECTIONS = sections(PAGE.read_text())


def test_the_page_has_the_workflows_the_issue_names():
    headings = " | ".join(h for h, _ in SECTIONS)
    for word in ("Setup", "peft", "Trainer", "TRL", "4-bit", "torch.compile", "Merging"):
        assert word in headings


@pytest.fixture(scope="module")
def page_state(tmp_path_factory):
    """One namespace and one working folder for the whole page."""
    folder = tmp_path_factory.mktemp("workflows")
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield {"__name__": "workflows_md"}
    finally:
        os.chdir(previous)


def _run(heading: str, code: str, namespace: dict) -> None:
    package = NEEDS.get(heading)
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (it is in the dev extras)")
    exec(compile(code, f"{PAGE.name}: {heading}", "exec"), namespace)  # noqa: S102 - the page is ours


@pytest.mark.parametrize("heading,code", SECTIONS, ids=[h for h, _ in SECTIONS])
def test_section_runs(page_state, heading, code, monkeypatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    _run(heading, code, page_state)


@pytest.mark.slow
def test_the_whole_page_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "workflows_md"}
    for heading, code in SECTIONS:
        _run(heading, code, namespace)
