"""FLOPs formulas against hand counts and flop_counter; the benchmark end to end on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from peft import LoraConfig, get_peft_model

from hut_peft import HUTConfig
from hut_peft.flops import (
    AdaptedMatrix,
    activation_flops,
    adapted_matrices,
    flops_table,
    measured_flops,
    paper_weight_flops,
)


def test_formulas_by_hand():
    # d=k=4, r=2, N=3. LoRA weight-side (2r+1)dk = 5·16 = 80; HUT 4dk + r(d+k) = 64 + 16 = 80.
    lora, hut = AdaptedMatrix(4, 4, 2, "lora"), AdaptedMatrix(4, 4, 2, "hut")
    assert paper_weight_flops([lora]) == 80 and paper_weight_flops([hut]) == 80
    # activation side: LoRA 2Nr(d+k) = 2·3·2·8 = 96; HUT N(d+2k) + r(d+k) = 3·12 + 16 = 52
    assert activation_flops([lora], 3) == 96 and activation_flops([hut], 3) == 52
    assert paper_weight_flops([]) is None


def test_paper_table2_numbers_for_roberta_large():
    rows = {r.method: r for r in flops_table("roberta-large", ["hut", "lora"], batch=1, seq_len=512)}
    assert round(rows["lora"].paper_gflops, 2) == 0.86 and round(rows["hut"].paper_gflops, 2) == 0.20
    assert rows["hut"].trainable == 884_736 and rows["lora"].trainable == 786_432


def _tiny():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32))


def test_flop_counter_deltas_match_the_matmul_counts():
    n, d, r = 2 * 5, 16, 4
    frozen = measured_flops(_tiny(), 2, 5, train=False)
    hut = get_peft_model(_tiny(), HUTConfig(r=r, target_modules=["query", "value"]))
    lora = get_peft_model(_tiny(), LoraConfig(r=r, target_modules=["query", "value"]))
    # flop_counter counts matmuls only: HUT adds none; LoRA adds 2·N·r·(d+k) per matrix, 4 matrices
    assert measured_flops(hut, 2, 5, train=False) == frozen
    assert measured_flops(lora, 2, 5, train=False) - frozen == 4 * 2 * n * r * (d + d)
    assert len(adapted_matrices(hut)) == 4 and adapted_matrices(lora)[0] == AdaptedMatrix(d, d, r, "lora")


def test_flops_cli_json():
    out = subprocess.run([sys.executable, "-m", "hut_peft.cli", "flops", "--arch", "minilm-l6", "--seq-len", "8",
                          "--methods", "hut,lora", "--json"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert [r["method"] for r in rows] == ["frozen", "hut", "lora"]
    bad = subprocess.run([sys.executable, "-m", "hut_peft.cli", "flops", "--arch", "gpt5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Unknown --arch 'gpt5'" in bad.stderr


def test_bench_quick_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "hut_peft.cli", "bench", "--quick", "--output", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    training = result["training"][0]
    assert set(training["step_s"]) == {"frozen", "hut", "lora", "ia3", "full"}
    assert training["ratio_to_floor"]["frozen"] == pytest.approx(1.0)
    assert set(result["inference"]["latency_s"]) == {"base", "hut_unmerged", "hut_merged"}
    assert result["mixed"]["adapters"] == 8 and "| hut |" in proc.stdout
