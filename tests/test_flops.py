"""FLOPs: the formulas against hand counts, flop_counter against the formulas, the paper's Table 2 numbers,
and the published shapes against their known parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from hut_peft.cli import main
from hut_peft.hut import HUTConfig
from hut_peft.lab.archs import ARCHS, build_arch
from hut_peft.lab.flops import (
    AdaptedMatrix,
    activation_flops,
    adapted_matrices,
    flops_table,
    measured_flops,
    paper_weight_flops,
)


def test_formulas_by_hand():
    # Square, d = k = 4, r = 2, N = 3.
    lora, hut = AdaptedMatrix(4, 4, 2, "lora"), AdaptedMatrix(4, 4, 2, "hut")
    assert paper_weight_flops([lora]) == 80  # (2r+1)dk = 5·16
    assert paper_weight_flops([hut]) == 80  # 4dk + r(d+k) = 64 + 16
    assert activation_flops([lora], 3) == 96  # 2Nr(d+k) = 2·3·2·8
    assert activation_flops([hut], 3) == 52  # N(d+2k) + r(d+k) = 3·12 + 16
    # Non-square, d = 4 inputs, k = 6 outputs: a swapped d and k would change every number.
    lora, hut = AdaptedMatrix(4, 6, 2, "lora"), AdaptedMatrix(4, 6, 2, "hut")
    assert paper_weight_flops([lora]) == 120  # 5·24
    assert paper_weight_flops([hut]) == 116  # 96 + 2·10
    assert activation_flops([lora], 3) == 120  # 2·3·2·10
    assert activation_flops([hut], 3) == 68  # 3·(4 + 12) + 20
    assert paper_weight_flops([lora, hut]) == 236
    assert paper_weight_flops([]) is None and activation_flops([], 3) is None


def test_paper_table2_numbers_for_roberta_large():
    rows = {r.method: r for r in flops_table("roberta-large", ["hut", "lora"], batch=1, seq_len=512)}
    # 48 adapted 1024×1024 matrices (q and v in 24 layers), r = 8
    assert rows["lora"].paper_gflops * 1e9 == pytest.approx(17 * 1024**2 * 48)
    assert rows["hut"].paper_gflops * 1e9 == pytest.approx((4 * 1024**2 + 16 * 1024) * 48)
    assert f"{rows['lora'].paper_gflops:.2f}" == "0.86" and f"{rows['hut'].paper_gflops:.2f}" == "0.20"
    assert rows["hut"].trainable == 884_736 and rows["lora"].trainable == 786_432  # the paper's 0.9M and 0.8M
    assert rows["hut"].forward_delta_gflops == 0.0  # element-wise only: nothing for flop_counter
    assert rows["lora"].forward_delta_gflops * 1e9 == pytest.approx(48 * 2 * 512 * 8 * 2048)


def _tiny_llama():
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)  # v_proj is 32 → 16 (2 key-value heads of 8): a non-square matrix
    return LlamaModel(LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=48))


def test_flop_counter_deltas_match_the_matmul_counts():
    batch, seq, r = 2, 5, 4
    n = batch * seq
    targets = ["q_proj", "v_proj"]
    frozen_fwd = measured_flops(_tiny_llama().requires_grad_(False), batch, seq, train=False)
    frozen_step = measured_flops(_tiny_llama().requires_grad_(False), batch, seq, train=True)
    hut = get_peft_model(_tiny_llama(), HUTConfig(r=r, target_modules=targets, shift=False))
    lora = get_peft_model(_tiny_llama(), LoraConfig(r=r, target_modules=targets))
    assert sorted((m.d, m.k) for m in adapted_matrices(lora)) == [(32, 16), (32, 16), (32, 32), (32, 32)]
    assert sorted(adapted_matrices(hut), key=lambda m: m.k) == sorted(
        [AdaptedMatrix(m.d, m.k, r, "hut") for m in adapted_matrices(lora)], key=lambda m: m.k)
    # flop_counter counts matmuls only: HUT adds none, forward or backward ...
    assert measured_flops(hut, batch, seq, train=False) == frozen_fwd
    assert measured_flops(hut, batch, seq, train=True) == frozen_step
    # ... LoRA adds 2·N·r·(d+k) per matrix forward, and twice that in the backward (dA, dB, and dx through BA)
    lora_fwd = sum(2 * n * r * (d + k) for d, k in [(32, 32), (32, 16)] * 2)
    assert measured_flops(lora, batch, seq, train=False) - frozen_fwd == lora_fwd
    assert measured_flops(lora, batch, seq, train=True) - frozen_step == 3 * lora_fwd


def test_fused_gpt2_projection_counts_q_and_v_blocks():
    from transformers import GPT2Config, GPT2Model

    from hut_peft.lab.methods import apply_method

    model = apply_method("hut", GPT2Model(GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4)))
    assert adapted_matrices(model) == [AdaptedMatrix(32, 32, 8, "hut")] * 4  # q and v blocks, k stays frozen


def test_published_shapes_have_their_known_parameter_counts():
    known = {"bert-base": 109_482_240, "roberta-base": 124_645_632, "roberta-large": 355_359_744,
             "gpt2": 124_439_808, "gpt2-medium": 354_823_168, "minilm-l6": 22_713_216, "smollm2-135m": 134_515_008,
             "llama-3-8b": 7_504_924_672}  # 8,030,261,248 with its untied LM head (128,256 × 4,096)
    assert set(known) == set(ARCHS)
    for name, count in known.items():
        model = build_arch(name)
        assert all(p.is_meta for p in model.parameters())
        assert sum(p.numel() for p in model.parameters()) == count, name
    assert sum(p.numel() for p in build_arch("roberta-large", layers=2).parameters()) == 355_359_744 - 22 * 12_596_224
    with pytest.raises(ValueError, match="Unknown --arch 'gpt5'"):
        build_arch("gpt5")


def test_flops_cli_json_and_errors(capsys):
    assert main(["flops", "--arch", "minilm-l6", "--seq-len", "8", "--methods", "hut,lora", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["arch"] == "minilm-l6" and payload["seq_len"] == 8
    assert [r["method"] for r in payload["rows"]] == ["frozen", "hut", "lora"]
    assert main(["flops", "--arch", "gpt5"]) == 2 and "Unknown --arch 'gpt5'" in capsys.readouterr().err
    assert main(["flops", "--arch", "minilm-l6", "--methods", "hutt"]) == 2
    assert "Unknown method 'hutt'" in capsys.readouterr().err
