"""docs/serving.md's vLLM commands, run as the page writes them (tools/check_serving_docs.py; slow: the real model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_serving_docs.py"


@pytest.mark.slow
def test_the_pages_serve_command_and_client_work_as_written() -> None:
    done = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "tenant-a" in done.stdout and "tenant-q" in done.stdout


def test_the_page_has_the_commands_the_tool_runs() -> None:
    sys.path.insert(0, str(TOOL.parent))
    from check_serving_docs import PAGE, client_block, serve_commands

    text = PAGE.read_text()
    assert serve_commands(text) and "hut-peft serve --adapters adapters/" in serve_commands(text)[0]
    assert 'api_key=KEY' in client_block(text)
