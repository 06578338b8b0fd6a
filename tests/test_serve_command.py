"""`hut-peft serve` without starting vLLM: which adapters it finds, the command it builds, the default model.

test_vllm_server.py runs the command for real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from hut_peft import cli
from hut_peft.lab import serve
from hut_peft.lab.serve import (
    GIB,
    cpu_kv_cache_bytes,
    export_smollm2,
    exposure_warning,
    find_adapters,
    lora_rank_flag,
    machine_flags,
    vllm_command,
)


def adapter(folder: Path, peft_type: str = "HUT", **config) -> Path:
    """A folder as save_pretrained lays it out: the config and a (one-tensor) weights file."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, **config}))
    save_file({"base_model.model.proj.hut_gamma": torch.ones(4)}, folder / "adapter_model.safetensors")
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
    assert out[0] == "HUT_PEFT_VLLM_COMPILE=1"  # every adapter is HUT: vLLM compiles on CPU; shown, so it runs as printed
    assert out[4:6] == ["serve", "some/model"] and out[-2:] == ["--api-key", "k"]
    assert out[out.index("--max-loras") + 1] == "1" and out[out.index("--max-lora-rank") + 1] == "1"


def test_the_default_model_is_written_once_as_a_folder(tmp_path: Path) -> None:
    from transformers import AutoConfig

    folder = export_smollm2(tmp_path / "smollm2")
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "llama" and config.hidden_size == 576 and str(config.dtype) == "torch.float32"
    assert (folder / "tokenizer.json").is_file() and not list(tmp_path.glob(".smollm2.*"))  # no temp left
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert export_smollm2(tmp_path / "smollm2") == folder and (folder / "config.json").stat().st_mtime_ns == stamp


def test_machine_defaults_fill_only_what_the_user_left_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "cpu_build", lambda: True)
    monkeypatch.setattr(serve, "available_memory", lambda: 21 * GIB)
    assert machine_flags([], {}) == ["--host", "127.0.0.1", "--kv-cache-memory-bytes", str(2 * GIB)]
    assert machine_flags(["--host", "0.0.0.0", "--gpu-memory-utilization", "0.3"], {}) == []
    assert machine_flags(["--host=::1", "--kv-cache-memory-bytes=5000000000"], {}) == []
    assert machine_flags(["--host", "h"], {"VLLM_CPU_KVCACHE_SPACE": "2"}) == []  # vLLM's own variable wins too
    monkeypatch.setattr(serve, "cpu_build", lambda: False)  # GPUs: vLLM's memory defaults are right there
    assert machine_flags([], {}) == ["--host", "127.0.0.1"]


@pytest.mark.parametrize("available, expected", [(2 * GIB, GIB), (21 * GIB, 2 * GIB), (100 * GIB, 4 * GIB)])
def test_the_cpu_kv_cache_is_an_eighth_of_free_memory_within_bounds(available: int, expected: int) -> None:
    assert cpu_kv_cache_bytes(available) == expected


def test_listening_beyond_this_machine_without_a_key_warns() -> None:
    assert exposure_warning(["serve", "m", "--host", "127.0.0.1"], {}) is None
    assert "listening on 0.0.0.0 with no --api-key" in exposure_warning(["serve", "m", "--host", "0.0.0.0"], {})
    assert exposure_warning(["serve", "m", "--host", "0.0.0.0", "--api-key", "k"], {}) is None
    assert exposure_warning(["serve", "m", "--host=0.0.0.0"], {"VLLM_API_KEY": "k"}) is None
    assert "every interface" in exposure_warning(["serve", "m"], {})


def test_a_bad_adapter_is_named_before_vllm_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    adapter(tmp_path / "ads" / "good")
    bad = adapter(tmp_path / "ads" / "broken")
    (bad / "adapter_model.safetensors").write_bytes((bad / "adapter_model.safetensors").read_bytes()[:-3])
    assert cli.main(["serve", "m", "--adapters", str(tmp_path / "ads"), "--print-command"]) == 2
    err = capsys.readouterr().err
    assert f"bad adapter {bad.resolve()}: adapter_model.safetensors is truncated" in err


def test_print_command_on_the_default_model_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(serve, "CACHE", tmp_path / "cache")
    adapter(tmp_path / "ads" / "t")
    assert cli.main(["serve", "--adapters", str(tmp_path / "ads"), "--print-command"]) == 0
    out, err = capsys.readouterr()
    assert str(tmp_path / "cache" / "smollm2-135m-instruct-fp32") in out.split() and not (tmp_path / "cache").exists()
    assert "the fp32 weights resolve_model('smollm2') trains on" in err
    assert out.split()[out.split().index("--host") + 1] == "127.0.0.1"


def test_compilation_is_asked_for_only_when_every_adapter_is_hut(tmp_path: Path) -> None:
    hut = {"h": adapter(tmp_path / "h")}
    mixed = {**hut, "l": adapter(tmp_path / "l", "LORA", r=8)}
    assert serve.compile_env(hut, [], {}) == {"HUT_PEFT_VLLM_COMPILE": "1"}
    assert serve.compile_env(mixed, [], {}) == {}
    assert serve.compile_env(hut, ["--enforce-eager"], {}) == {}
    assert serve.compile_env(hut, [], {"HUT_PEFT_VLLM_COMPILE": "0"}) == {}  # the user's choice stands
