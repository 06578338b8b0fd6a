"""The E2E recipe end to end on a tiny GPT-2 and fixture CSVs; the real-model run is slow-marked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tiny_causal_lm_dir

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and the PTB tokeniser need Java")
ROWS = [
    ("name[The Vaults], eatType[pub]", "The Vaults is a pub ."),
    ("name[The Vaults], eatType[pub]", "a pub called The Vaults ."),
    ("name[Blue Spice], food[Chinese]", "Blue Spice serves Chinese food ."),
    ("name[Aromi], eatType[cafe]", "Aromi is a cafe ."),
]


def _fixture(root: Path) -> tuple[Path, Path]:
    data = root / "e2e"
    data.mkdir(parents=True)
    body = "".join(f'"{mr}",{ref}\n' for mr, ref in ROWS)
    (data / "trainset.csv").write_text("mr,ref\n" + body * 4)
    (data / "devset.csv").write_text("mr,ref\n" + body)
    from hut_peft.lab.data.e2e import linearize_mr

    words = " ".join(linearize_mr(mr) + " || " + ref for mr, ref in ROWS).split()
    return write_tiny_causal_lm_dir(root / "model", words), data


@needs_java
def test_e2e_cli_end_to_end(tmp_path):
    model, data = _fixture(tmp_path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hut_peft.cli", "e2e", "--method", "hut", "--model", str(model), "--data-dir",
           str(data), "--output-dir", str(out), "--epochs", "2", "--batch-size", "4", "--learning-rate", "0.01",
           "--max-eval-mrs", "2", "--num-beams", "2", "--max-new-tokens", "8", "--decode-batch-size", "2",
           "--no-save-checkpoints"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
    seed = results["seeds"][0]
    assert seed["eval_mrs"] == 2 and seed["train_steps"] == 8 and seed["trainable_parameters"] > 0
    preds = (out / "seed-0" / "predictions.txt").read_text().splitlines()
    assert len(preds) == 2
    assert (out / "seed-0" / "references.txt").read_text().startswith("The Vaults is a pub .\na pub called")
    assert results["settings"]["num_beams"] == 2 and results["settings"]["label_smoothing"] == 0.1
    assert "BLEU" in proc.stdout


@pytest.mark.slow
@needs_java
def test_smollm2_hut_beats_zero_shot_on_a_dev_slice(tmp_path, data_dir):
    """HUT on the embedded SmolLM2-135M, 400 training pairs, 20 dev MRs: BLEU above the base model's."""
    common = [sys.executable, "-m", "hut_peft.cli", "e2e", "--data-dir", str(data_dir / "e2e"),
              "--max-eval-mrs", "20", "--num-beams", "4", "--decode-batch-size", "10", "--no-save-checkpoints"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    zero = subprocess.run(common + ["--no-train", "--output-dir", str(tmp_path / "zero")], env=env,
                          capture_output=True, text=True)
    assert zero.returncode == 0, zero.stderr[-3000:]
    tuned = subprocess.run(common + ["--method", "hut", "--max-train-samples", "400", "--output-dir",
                                     str(tmp_path / "hut")], env=env, capture_output=True, text=True)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    bleu = {k: json.loads((tmp_path / k / "results.json").read_text())["summary"]["BLEU"]["mean"]
            for k in ("zero", "hut")}
    assert bleu["hut"] > bleu["zero"], bleu


def test_gguf_marker_is_dropped_so_trainer_can_train():
    """transformers keeps a GGUF quantizer on dequantised float models; Trainer would refuse them."""
    from types import SimpleNamespace

    from transformers.trainer_utils import validate_quantization_for_training

    from hut_peft.lab.models import drop_gguf_quantization_marker

    model = SimpleNamespace(
        hf_quantizer=SimpleNamespace(quantization_config=SimpleNamespace(quant_method="gguf"), is_trainable=False),
        is_quantized=True, config=SimpleNamespace(quantization_config={"quant_method": "gguf"}),
    )
    with pytest.raises(ValueError, match="quantized"):
        validate_quantization_for_training(model)
    drop_gguf_quantization_marker(model)
    validate_quantization_for_training(model)
    assert model.hf_quantizer is None and not hasattr(model.config, "quantization_config")


def test_rescore_results_rewrites_only_the_scores(tmp_path):
    # A two-seed run stored with a wrong NIST; seed 0 keeps its metrics.json. A Java-free scorer: our BLEU and
    # NIST, the stored COCO numbers unchanged.
    from hut_peft.lab.data.e2e import write_official_layout
    from hut_peft.lab.metrics.e2e import bleu_nist
    from hut_peft.lab.train.e2e import rescore_results

    groups = [("mr1", ["a b c d", "a b c"]), ("mr2", ["d e f g h"])]
    outputs = {0: ["a b", "d e f"], 1: ["a b c d", "d e f g h"]}
    coco = {"METEOR": 0.5, "ROUGE_L": 0.6, "CIDEr": 1.0}
    records = []
    for seed, preds in outputs.items():
        write_official_layout(groups, preds, tmp_path / f"seed-{seed}" / "references.txt",
                              tmp_path / f"seed-{seed}" / "predictions.txt")
        records.append({"seed": seed, "metrics": {"BLEU": bleu_nist(preds, [r for _, r in groups])[0], "NIST": 99.0,
                                                  **coco}, "eval_mrs": 2})
    (tmp_path / "seed-0" / "metrics.json").write_text(json.dumps(records[0]))
    stored = {"recipe": "e2e", "config": {"seeds": "0,1"}, "seeds": records,
              "summary": {m: {"mean": 0.0, "std": 0.0, "n": 2} for m in records[0]["metrics"]}, "wall_time_s": 1.0}
    (tmp_path / "results.json").write_text(json.dumps(stored))

    def score(preds, refs):
        bleu, nist = bleu_nist(preds, refs)
        return {"BLEU": bleu, "NIST": nist, **coco}

    changes = rescore_results(tmp_path / "results.json", score=score)
    nists = [bleu_nist(outputs[s], [r for _, r in groups])[1] for s in (0, 1)]
    assert changes == [(0, "NIST", 99.0, nists[0]), (1, "NIST", 99.0, nists[1])] and nists[0] < nists[1]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["metrics"]["NIST"] for r in results["seeds"]] == nists
    assert results["summary"]["NIST"]["mean"] == pytest.approx(sum(nists) / 2)
    assert results["summary"]["METEOR"] == {"mean": 0.5, "std": 0.0, "n": 2}
    assert {k: v for k, v in results.items() if k not in ("seeds", "summary")} == \
        {k: v for k, v in stored.items() if k not in ("seeds", "summary")}
    assert json.loads((tmp_path / "seed-0" / "metrics.json").read_text())["metrics"]["NIST"] == nists[0]
    assert rescore_results(tmp_path / "results.json", score=score) == []  # idempotent

    shutil.rmtree(tmp_path / "seed-1")
    with pytest.raises(FileNotFoundError, match="seed 1 has no references.txt"):
        rescore_results(tmp_path / "results.json", score=score)
    (tmp_path / "glue.json").write_text(json.dumps({"recipe": "glue"}))
    with pytest.raises(ValueError, match="not an E2E results.json"):
        rescore_results(tmp_path / "glue.json", score=score)
