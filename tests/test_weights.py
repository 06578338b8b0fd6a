"""`hut-peft weights`: the statistics against hand-made matrices, then end to end on saved tiny-model adapters."""

from __future__ import annotations

import json

import pytest
import torch

from hut_peft.lab.weights import collect, matrix_stats


def test_matrix_stats_on_hand_made_updates() -> None:
    w0 = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # (4, 3), rank 3
    same = matrix_stats(w0, w0.clone())
    assert same["pearson"] == pytest.approx(1.0) and same["rel_change"] == 0.0 and same["rank"] == 0
    doubled = matrix_stats(w0, 2 * w0)  # a uniform scale: perfectly correlated, moved by ‖W0‖, full rank
    assert doubled["pearson"] == pytest.approx(1.0) and doubled["rel_change"] == pytest.approx(1.0)
    assert doubled["rank"] == 3 and doubled["shape"] == [4, 3]
    u, v = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 6.0])  # ΔW = u vᵀ: one entry, +6
    moved = matrix_stats(w0, w0 + torch.outer(u, v))
    assert moved["rank"] == 1 and moved["rank_90"] == 1
    assert moved["rel_change"] == pytest.approx(6.0 / w0.norm().item())
    pair = torch.stack([w0.flatten(), (w0 + torch.outer(u, v)).flatten()]).double()
    assert moved["pearson"] == pytest.approx(torch.corrcoef(pair)[0, 1].item(), abs=1e-12)
    # Energies 9, 1, 0.01: the first direction holds 89.9% (< 90%), two hold 99.9%. With 9, 0.25, 0.01: 97.2%.
    energy = matrix_stats(torch.eye(3), torch.eye(3) + torch.diag(torch.tensor([3.0, 1.0, 0.1])))
    assert energy["rank"] == 3 and energy["rank_90"] == 2
    assert matrix_stats(torch.eye(3), torch.eye(3) + torch.diag(torch.tensor([3.0, 0.5, 0.1])))["rank_90"] == 1


def test_weights_of_saved_hut_and_lora_adapters(tiny_glue_setup, tmp_path) -> None:
    from hut_peft.lab.train.glue import GlueRecipe, run_glue

    model, data = tiny_glue_setup
    for method, lr in (("hut", 3e-2), ("lora", 1e-2)):
        run_glue(GlueRecipe(task="rte", method=method, model=str(model), data_dir=str(data), epochs=1, batch_size=8,
                            learning_rate=lr, save_checkpoints=False, save_adapter=True,
                            output_dir=str(tmp_path / "weights" / method)))
    rows = {row["label"]: row for row in collect([str(tmp_path / "weights")])}
    assert set(rows) == {"hut", "lora"}
    for row in rows.values():
        names = sorted(row["matrices"])
        assert len(names) == 4 and all(n.endswith(("query.weight", "value.weight")) for n in names)  # 2 layers × q, v
        assert row["summary"]["rel_change"] > 0 and -1 <= row["summary"]["pearson"] <= 1
    # LoRA's update has rank <= r; HUT's, W0 ⊙ (m_A cᵀ − 1), has the rank of a Hadamard product: full here (32 × 32).
    assert 1 <= rows["lora"]["summary"]["rank_max"] <= 8
    assert rows["hut"]["summary"]["rank_min"] == rows["hut"]["summary"]["full_rank"] == 32
    # Independent check of one HUT matrix: W_new = diag(m_A) W0 diag(γ ⊙ m_B) from the saved tensors.
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    saved = load_file(str(tmp_path / "weights" / "hut" / "seed-0" / "adapter" / "trainable.safetensors"))
    prefix = next(k for k in saved if k.endswith("query.hut_A.default")).removesuffix("hut_A.default")
    m_a, m_b = saved[prefix + "hut_A.default"].double().mean(-1), saved[prefix + "hut_B.default"].double().mean(-2)
    gamma = saved[prefix + "hut_gamma.default"].double()
    base = AutoModelForSequenceClassification.from_pretrained(model)
    w0 = dict(base.named_parameters())["bert.encoder.layer.0.attention.self.query.weight"].double()
    w_new = m_b[:, None] * gamma[:, None] * w0 * m_a[None, :]  # nn.Linear stores (out, in)
    expected = matrix_stats(w0, w_new)
    got = rows["hut"]["matrices"]["bert.encoder.layer.0.attention.self.query.weight"]
    assert got["pearson"] == pytest.approx(expected["pearson"], abs=1e-6)
    assert got["rel_change"] == pytest.approx(expected["rel_change"], rel=1e-5)
    json.dumps(rows)  # what `hut-peft weights` writes must be JSON


def test_weights_cli_without_adapters_says_how_to_get_them(tmp_path, capsys) -> None:
    from hut_peft.cli import main

    assert main(["weights", str(tmp_path)]) == 2
    assert "run the GLUE recipe with --save-adapter first" in capsys.readouterr().err
    # a run that saved its adapter, whose adapter is gone (not committed): an error, not a silently missing row
    run = tmp_path / "weights" / "mrpc" / "full"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"recipe": "glue", "primary_metric": "accuracy",
                                                  "config": {"save_adapter": True}, "seeds": [{"seed": 0}]}))
    assert main(["weights", str(tmp_path)]) == 2
    assert "seed-0/adapter is missing although the run saved it" in capsys.readouterr().err


def _run(task: str, label: str, pearson: float, score: float) -> dict:
    summary = {"pearson": pearson, "pearson_min": pearson - 0.001, "rel_change": 1 - pearson, "rank_median": 384,
               "rank_min": 380, "rank_max": 384, "rank_90_median": 200, "matrices": 12, "full_rank": 384}
    return {"task": task, "label": label, "seed": 0, "learning_rate": 1e-3, "score": score, "metric": "accuracy",
            "adapter": "x", "summary": summary, "matrices": {}}


def test_weights_section_orders_methods_and_draws_the_figure(tmp_path) -> None:
    from hut_peft.lab.report.weights import weights_section

    data = {"energy": 0.9, "adapted": ["query.weight", "value.weight"],
            "runs": [_run("mrpc", "hut", 0.9999, 0.70), _run("mrpc", "full", 0.99, 0.75), _run("mrpc", "lora", 0.999, 0.72)]}
    (tmp_path / "weights.json").write_text(json.dumps(data))
    text = weights_section(tmp_path / "weights.json", tmp_path / "RESULTS-weights.png")
    rows = [line for line in text.splitlines() if line.startswith("| MRPC")]
    assert [r.split(" | ")[1] for r in rows] == ["Full FT", "LoRA", "HUT"]  # full, LoRA, HiRA, HUT order
    assert "| 0.9999 (0.9989) | 0.0001 | 384 (380–384) of 384 | 200 |" in rows[2]
    assert ("- MRPC: by correlation with W0, HUT (0.9999) > LoRA (0.9990) > Full FT (0.9900); "
            "by score, Full FT (75.0) > LoRA (72.0) > HUT (70.0).") in text
    assert ("- MRPC: the claim holds (HUT's mean Pearson 0.9999 against LoRA's 0.9990); across the 3 methods, "
            "correlation and score have Spearman's ρ = -1.00.") in text
    assert (tmp_path / "RESULTS-weights.png").stat().st_size > 10_000
    assert weights_section(tmp_path / "missing.json", tmp_path / "x.png") == ""
