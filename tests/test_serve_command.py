"""`hut-peft serve` without starting vLLM: which adapters it finds, the command it builds, the default model.

test_vllm_server.py runs the command for real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hut_peft import cli
from hut_peft.lab.serve import export_smollm2, find_adapters, lora_rank_flag, vllm_command


def adapter(folder: Path, peft_type: str = "HUT", **config) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, **config}))
    return folder


def test_every_adapter_subfolder_is_served_under_its_name(tmp_path: Path) -> None:
    adapter(tmp_path / "b-tenant")
    adapter(tmp_path / "a-tenant", "LORA", r=12)
    (tmp_path / "notes").mkdir()  # not an adapter: skipped
    found = find_adapters(tmp_path)
    assert list(found) == ["a-tenant", "b-tenant"]
    assert find_adapters(tmp_path / "b-tenant") == {"b-tenant": (tmp_path / "b-tenant").resolve()}
    assert lora_rank_flag(found) == 16  # the LoRA's rank 12, rounded up to a value vLLM accepts
    assert lora_rank_flag({"b-tenant": found["b-tenant"]}) == 1  # HUT alone needs no LoRA rank


def test_no_adapter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no adapter in it"):
        find_adapters(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_adapters(tmp_path / "missing")
    with pytest.raises(ValueError, match="rank 1000"):
        lora_rank_flag({"x": adapter(tmp_path / "x", "LORA", r=1000)})


def test_the_command_is_vllm_serve_with_the_users_flags_last(tmp_path: Path) -> None:
    adapters = {"t": adapter(tmp_path / "t")}
    command = vllm_command("base-folder", adapters, None, ["--port", "9000", "--max-loras", "8"])
    assert command[:5] == [sys.executable, "-m", "hut_peft.serving.vllm_main", "serve", "base-folder"]
    assert command[-4:] == ["--port", "9000", "--max-loras", "8"]  # vLLM keeps the last value: the user's wins
    assert "--enable-lora" in command and f"t={tmp_path / 't'}" in command


def test_print_command_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    adapter(tmp_path / "ads" / "t")
    assert cli.main(["serve", "some/model", "--adapters", str(tmp_path / "ads"), "--print-command", "--",
                     "--api-key", "k"]) == 0
    out = capsys.readouterr().out.split()
    assert out[3:5] == ["serve", "some/model"] and out[-2:] == ["--api-key", "k"]
    assert out[out.index("--max-loras") + 1] == "1" and out[out.index("--max-lora-rank") + 1] == "1"


def test_the_default_model_is_written_once_as_a_folder(tmp_path: Path) -> None:
    from transformers import AutoConfig

    folder = export_smollm2(tmp_path / "smollm2")
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and config.hidden_size == 576 and str(config.dtype) == "torch.bfloat16"
    assert (folder / "tokenizer.json").is_file() and not list(tmp_path.glob(".smollm2.*"))  # no temp left
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert export_smollm2(tmp_path / "smollm2") == folder and (folder / "config.json").stat().st_mtime_ns == stamp
