"""The GLUE recipe on the embedded MiniLM and real GLUE files: the score must beat the majority class.

The default run trains on an SST-2 slice (about half a minute on 2 cores); the slow run is issue 4's
done-when command, RTE from 512 examples with the recipe's defaults for that budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from hut_peft.lab.data.glue import load_glue


def _glue(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "hut_peft.cli", "glue", *args], capture_output=True, text=True,
                          env=env, timeout=1500)


def _majority_share(task: str, glue_dir, max_eval_samples: int | None) -> float:
    dev = load_glue(task, glue_dir, split="validation", max_samples=max_eval_samples, seed=0)
    counts = Counter(dev["label"])
    return max(counts.values()) / len(dev)


def _require(glue_dir, folder: str) -> None:
    if not (glue_dir / folder).is_dir():
        pytest.skip(f"GLUE {folder} not found at {glue_dir} (set HUT_PEFT_DATA_DIR)")


def test_hut_on_minilm_beats_the_majority_class_on_an_sst2_slice(data_dir, tmp_path):
    glue_dir = data_dir / "glue"
    _require(glue_dir, "SST-2")
    out = tmp_path / "sst2"
    proc = _glue(["--task", "sst2", "--method", "hut", "--data-dir", str(glue_dir), "--output-dir", str(out),
                  "--max-train-samples", "320", "--max-eval-samples", "200", "--max-length", "64",
                  "--no-save-checkpoints"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    accuracy = results["summary"]["best"]["accuracy"]["mean"]
    majority = _majority_share("sst2", glue_dir, 200)
    assert accuracy >= majority + 0.10, (accuracy, majority)


@pytest.mark.slow
def test_rte_done_when_command_beats_the_majority_class(data_dir, tmp_path):
    """Issue 4's done-when: `hut-peft glue --task rte --method hut --max-train-samples 512` (defaults)."""
    glue_dir = data_dir / "glue"
    _require(glue_dir, "RTE")
    out = tmp_path / "rte"
    proc = _glue(["--task", "rte", "--method", "hut", "--data-dir", str(glue_dir), "--output-dir", str(out),
                  "--max-train-samples", "512", "--no-save-checkpoints"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    accuracy = results["summary"]["best"]["accuracy"]["mean"]
    majority = _majority_share("rte", glue_dir, None)
    assert accuracy >= majority + 0.03, (accuracy, majority)
