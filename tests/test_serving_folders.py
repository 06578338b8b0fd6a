"""hut_peft.serving.folders: a broken adapter folder is named and refused before any engine reads it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hut_peft.serving.folders import BAD_ADAPTER, CONFIG_NAME, WEIGHTS_NAME, check_folder, check_weights, read_config


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"peft_type": "HUT", "r": 2}))
    save_file({"base_model.model.proj.hut_gamma": torch.ones(5), "base_model.model.proj.hut_A": torch.ones(6, 2)},
              tmp_path / WEIGHTS_NAME)
    return tmp_path


def test_a_whole_folder_passes_with_its_tensor_names(folder: Path) -> None:
    assert check_folder(folder)["peft_type"] == "HUT"
    assert sorted(check_weights(folder)) == ["base_model.model.proj.hut_A", "base_model.model.proj.hut_gamma"]


@pytest.mark.parametrize("cut", [1, 8, 30, -1])  # inside the length, inside the header, inside the data, last byte
def test_a_truncated_weights_file_is_named(folder: Path, cut: int) -> None:
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[:cut])
    broken = "(is truncated|is not a safetensors|has a corrupt)"
    with pytest.raises(ValueError, match=rf"^{BAD_ADAPTER} {folder}: {WEIGHTS_NAME} {broken}"):
        check_weights(folder)


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "has no peft_type"),
    ('{"r": 8}', "has no peft_type"),
])
def test_a_broken_config_is_named(folder: Path, text: str, message: str) -> None:
    (folder / CONFIG_NAME).write_text(text)
    with pytest.raises(ValueError, match=rf"^{BAD_ADAPTER} {folder}: {CONFIG_NAME} {message}"):
        read_config(folder)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no {CONFIG_NAME}"):
        read_config(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"no {WEIGHTS_NAME}"):
        check_weights(tmp_path)


def test_the_checks_need_only_the_standard_library() -> None:
    """``hut-peft serve`` runs them before vLLM starts, and vLLM's API process may run them: no torch, no engine."""
    import ast

    import hut_peft.serving.folders as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
