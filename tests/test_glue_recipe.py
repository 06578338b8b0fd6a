"""The GLUE recipe end to end on a tiny model and a fixture folder; scale-out on two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _cli(args: list[str], env_extra: dict | None = None, launcher: list[str] | None = None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = (launcher or [sys.executable, "-m", "hut_peft.cli"]) + args
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_glue_cli_end_to_end_and_resume(tiny_glue_setup, tmp_path):
    model, data = tiny_glue_setup
    out = tmp_path / "run"
    args = ["glue", "--task", "rte", "--method", "hut", "--model", str(model), "--data-dir", str(data),
            "--output-dir", str(out), "--epochs", "2", "--batch-size", "8", "--seeds", "0,1", "--logging-steps", "2",
            "--save-adapter"]
    proc = _cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "headline (accuracy, best epoch)" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in results["seeds"]] == [0, 1]
    assert results["settings"]["learning_rate"] > 0 and results["trainable_parameters"] > 0
    assert results["settings"]["head"] == "cls"  # a plain checkpoint: the paper's [CLS] head
    assert set(results["summary"]["best"]["accuracy"]) == {"mean", "std", "n"}
    assert len(results["seeds"][0]["per_epoch"]) == 2
    assert "torch" in results["environment"]
    saved = json.loads((out / "seed-1" / "adapter" / "method.json").read_text())  # --save-adapter: what trained
    assert saved["method"] == "hut" and saved["trainable"] == results["trainable_parameters"]
    assert (out / "seed-1" / "adapter" / "trainable.safetensors").is_file()
    # resume: finished seeds are not trained again
    mtime = (out / "seed-0" / "metrics.json").stat().st_mtime
    proc = _cli(args + ["--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "seed-0" / "metrics.json").stat().st_mtime == mtime


def test_glue_cli_errors_are_clear(tiny_glue_setup, tmp_path, capsys):
    """Bad input fails before any training, with one line naming the problem (in-process: no start-up to pay)."""
    from hut_peft.cli import main

    model, data = tiny_glue_setup
    assert main(["glue", "--task", "nope", "--model", str(model), "--data-dir", str(data)]) != 0
    assert "not a GLUE task" in capsys.readouterr().err
    assert main(["glue", "--task", "cola", "--model", str(model), "--data-dir", str(data),
                 "--output-dir", str(tmp_path / "x")]) != 0
    assert "CoLA" in capsys.readouterr().err
    assert not (tmp_path / "x" / "results.json").exists()
    assert main(["glue", "--task", "rte", "--method", "bitfit", "--preset", "paper", "--model", str(model),
                 "--data-dir", str(data)]) != 0
    assert "Table 6" in capsys.readouterr().err


def test_torchrun_two_cpu_processes_match_single_process(tiny_glue_setup, tmp_path):
    """Data-parallel on gloo: same metrics within noise as one process, and only rank 0 writes."""
    model, data = tiny_glue_setup
    common = ["glue", "--task", "rte", "--method", "hut", "--model", str(model), "--data-dir", str(data),
              "--epochs", "1", "--batch-size", "8", "--no-save-checkpoints"]
    single = _cli(common + ["--output-dir", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                "-m", "hut_peft.cli"]
    ddp = _cli(common + ["--output-dir", str(tmp_path / "two"), "--batch-size", "4"], launcher=launcher)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    # 2 processes × batch 4 = the same global batch of 8: same number of optimiser steps
    assert two["seeds"][0]["train_steps"] == one["seeds"][0]["train_steps"]
    assert abs(two["summary"]["final"]["accuracy"]["mean"] - one["summary"]["final"]["accuracy"]["mean"]) <= 0.25
    written = sorted(p.name for p in (tmp_path / "two").rglob("*.json"))
    assert written.count("results.json") == 1 and written.count("metrics.json") == 1


def test_precision_resolution_and_errors(monkeypatch):
    import pytest
    import torch

    from hut_peft.lab.train import common

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(common, "native_bf16", lambda: True)
    assert common.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(common, "native_bf16", lambda: False)
    assert common.resolve_precision("auto") == "fp32"
    assert common.resolve_precision("bf16") == "bf16"  # asked for: honoured even where it is emulated
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        common.resolve_precision("fp16")
    with pytest.raises(ValueError, match="--precision must be one of auto, bf16, fp16, fp32"):
        common.resolve_precision("half")


def test_head_optimizer_gives_the_head_its_own_rate():
    import pytest
    from torch import nn

    from hut_peft.lab.train.glue import head_optimizer

    model = nn.ModuleDict({"encoder": nn.Linear(4, 4), "classifier": nn.Linear(4, 2)})
    opt = head_optimizer(model, 1e-4, 1e-3, 0.0)
    ids = [{id(p) for p in g["params"]} for g in opt.param_groups]
    assert ids == [{id(p) for p in model["encoder"].parameters()}, {id(p) for p in model["classifier"].parameters()}]
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    with pytest.raises(ValueError, match="no trainable task head"):
        head_optimizer(nn.ModuleDict({"encoder": nn.Linear(4, 4)}), 1e-4, 1e-3, 0.0)
