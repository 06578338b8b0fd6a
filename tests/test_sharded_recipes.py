"""`hut-peft glue` and `hut-peft e2e` unchanged under the accelerate configs (2 CPU processes, gloo).

glue runs under ZeRO-3 (DeepSpeed checkpoints, resumed from one); e2e under ZeRO-3 and FSDP2, where rank 0 decodes
alone from the gathered weights; only rank 0 writes. About 90 s here, so slow-marked (`make test-slow`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_e2e_recipe import _fixture
from test_sharded import CONFIGS, ROOT, SHIM, _env, _free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                 reason="deepspeed is in the dev extra: pip install -e '.[dev]'"),
              pytest.mark.skipif(shutil.which("java") is None, reason="E2E's METEOR needs Java")]


def _launch(config: str, args: list[str], accelerate_args: tuple[str, ...] | list[str] = ()) -> None:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{config}.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", _free_port(), *accelerate_args,
           "-m", "hut_peft.cli", *args]
    env = _env(HUT_SHARDED_ON_CPU="1", ACCELERATE_TORCH_DEVICE="cpu",
               PYTHONPATH=os.pathsep.join([str(SHIM), str(ROOT / "src")]))
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.json") if "checkpoint-" not in str(p))


def test_glue_under_zero3_resumes_and_e2e_under_zero3_and_fsdp2(tiny_glue_setup, tmp_path):
    model, data = tiny_glue_setup
    out = tmp_path / "glue"
    glue = ["glue", "--task", "rte", "--method", "hut", "--model", str(model), "--data-dir", str(data),
            "--epochs", "2", "--batch-size", "4", "--output-dir", str(out)]
    _launch("zero3", glue + ["--save-adapter"])
    first = json.loads((out / "results.json").read_text())
    assert _written(out) == ["method.json", "metrics.json", "results.json"]  # rank 0 only
    from safetensors.torch import load_file

    saved = load_file(str(out / "seed-0" / "adapter" / "trainable.safetensors"))  # gathered whole, not rank 0's shard
    query_a = next(t for n, t in saved.items() if n.endswith("query.hut_A.default"))
    assert query_a.shape == (32, 8)  # (d, r) of the tiny BERT
    assert sum(t.numel() for t in saved.values()) == first["trainable_parameters"]
    checkpoint = out / "seed-0" / "checkpoint-12"  # 48 examples / (2 processes × 4) × 2 epochs
    assert (checkpoint / "global_step12").is_dir()  # a DeepSpeed checkpoint: ZeRO-3 really ran
    # interrupted after the last checkpoint: --resume restores the DeepSpeed state and finishes the seed
    (out / "results.json").unlink()
    (out / "seed-0" / "metrics.json").unlink()
    _launch("zero3", glue + ["--resume"])
    second = json.loads((out / "results.json").read_text())
    assert second["seeds"][0]["train_steps"] == first["seeds"][0]["train_steps"] == 12
    assert second["summary"]["final"] == first["summary"]["final"]  # the restored adapter scores the same

    # e2e: rank 0 decodes alone, from the trained weights gathered whole (common.whole_model)
    e2e_model, e2e_data = _fixture(tmp_path)
    runs = {}
    for config, extra in (("zero3", []), ("fsdp2", ["--fsdp_transformer_layer_cls_to_wrap", "GPT2Block"])):
        e2e_out = runs[config] = tmp_path / f"e2e-{config}"
        _launch(config, ["e2e", "--method", "hut", "--model", str(e2e_model), "--data-dir", str(e2e_data),
                         "--output-dir", str(e2e_out), "--epochs", "2", "--batch-size", "2", "--learning-rate", "0.01",
                         "--max-eval-mrs", "2", "--num-beams", "2", "--max-new-tokens", "8", "--decode-batch-size",
                         "2"], extra)
        results = json.loads((e2e_out / "results.json").read_text())
        assert results["seeds"][0]["train_steps"] == 8
        assert len((e2e_out / "seed-0" / "predictions.txt").read_text().splitlines()) == 2
        assert _written(e2e_out) == ["metrics.json", "results.json"]
    losses = [json.loads((out / "results.json").read_text())["seeds"][0]["train_loss"] for out in runs.values()]
    assert abs(losses[0] - losses[1]) < 1e-5
