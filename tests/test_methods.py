"""The method registry: every method on BERT, GPT-2 and Llama; honest counts; only trainables change;
merges are exact; saves round-trip; the paper's RoBERTa-large counts."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from hut_peft.methods import METHODS, apply_method, count_parameters, get_method, resolve_targets
from hut_peft.methods.modules import merge_hadamard

from conftest import tiny_bert, tiny_gpt2, tiny_llama

IDS = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(0))
ARCHS = {"bert": (tiny_bert, "SEQ_CLS"), "gpt2": (tiny_gpt2, "CAUSAL_LM"), "llama": (tiny_llama, "CAUSAL_LM")}
CANNOT = {("llama", "bitfit"): "has none", ("bert", "prefix"): "past key values"}


def _loss(model, kind):
    labels = torch.tensor([0, 1]) if kind == "bert" else IDS
    return model(input_ids=IDS, labels=labels).loss


@pytest.mark.parametrize("kind", list(ARCHS))
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_builds_and_one_step_changes_only_trainables(kind, name):
    build, task_type = ARCHS[kind]
    if (kind, name) in CANNOT:
        with pytest.raises(ValueError, match=CANNOT[(kind, name)]):
            apply_method(name, build(), task_type=task_type)
        return
    torch.manual_seed(0)
    model = apply_method(name, build(), task_type=task_type)
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    _loss(model, kind).backward()
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        if not p.requires_grad:
            assert not changed, f"frozen {n} changed"
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_closed_form_counts_on_tiny_bert():
    d, layers, ffn = 32, 2, 37
    head = d * 2 + 2 + d * d + d  # pooler dense is not trained; classifier d*2+2 ... see below
    counts = {name: count_parameters(apply_method(name, tiny_bert(), task_type="SEQ_CLS"))[0]
              for name in ("lora", "hut", "hadamard_adapter", "padapter", "hadapter", "ia3")}
    classifier = d * 2 + 2
    assert counts["lora"] == layers * 2 * (8 * d + d * 8) + classifier
    assert counts["hut"] == layers * 2 * (d * 8 + 8 * d + 2 * d) + classifier
    assert counts["hadamard_adapter"] == layers * 2 * d + classifier
    assert counts["padapter"] == layers * (2 * d * 64 + 64 + d) + classifier
    assert counts["hadapter"] == 2 * layers * (2 * d * 64 + 64 + d) + classifier
    assert counts["ia3"] == layers * (d + d + ffn) + classifier  # k, v outputs and the FFN input
    del head


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.merges and n not in ("full", "ft_top2", "bitfit")])
def test_merging_methods_merge_exactly(kind, name):
    build, task_type = ARCHS[kind]
    torch.manual_seed(0)
    model = apply_method(name, build(), task_type=task_type)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    _loss(model, kind).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        before = model(input_ids=IDS).logits
        merged = merge_hadamard(model) if name == "hadamard_adapter" else model.merge_and_unload()
        after = merged(input_ids=IDS).logits
    assert (after - before).abs().max() <= 1e-5
    assert not any(k in n for n, _ in merged.named_parameters() for k in ("hut_", "lora_", "hadamard_", "ia3_"))


@pytest.mark.parametrize("name", ["lora", "ia3", "vera", "fourierft", "hira", "hut"])
def test_peft_methods_save_and_reload(name, tmp_path):
    torch.manual_seed(0)
    model = apply_method(name, tiny_bert(seed=3), task_type="SEQ_CLS")
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    _loss(model, "bert").backward()
    opt.step()
    model.eval()
    expected = model(input_ids=IDS).logits
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_bert(seed=3), tmp_path).eval()
    torch.testing.assert_close(reloaded(input_ids=IDS).logits, expected, atol=1e-6, rtol=1e-6)


def test_targets_resolve_per_architecture():
    assert resolve_targets(tiny_bert(), "value")[0] == "bert.encoder.layer.0.attention.self.value"
    assert resolve_targets(tiny_gpt2(), "attn_out") == ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]
    assert len(resolve_targets(tiny_llama(), "ffn_in")) == 4  # up_proj and gate_proj
    assert len(resolve_targets(tiny_bert(), "ffn_out")) == 2  # not attention.output.dense


def test_unknown_names_are_clear():
    with pytest.raises(ValueError, match=r"Unknown method 'lorra'. Did you mean 'lora'\?"):
        get_method("lorra")
    with pytest.raises(ValueError, match="no preset 'nope'"):
        apply_method("hut", tiny_bert(), preset="nope")


def _roberta_large_meta():
    from transformers import RobertaConfig, RobertaModel

    cfg = RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    with torch.device("meta"):
        return RobertaModel(cfg)


@pytest.mark.parametrize(
    "name,preset,expected",
    [
        ("lora", "paper-glue", 786_432),  # paper: 0.8M
        ("hut", "paper-glue", 884_736),  # paper: 0.9M
        ("padapter", "paper-3m", 3_171_840),  # paper: 3.0M
        ("padapter", "paper-0.8m", 811_392),  # paper: 0.8M
        ("hadapter", "paper-6m", 6_343_680),  # paper: 6.0M
        ("hadapter", "paper-0.8m", 835_968),  # paper: 0.8M
        ("vera", "paper-glue", 61_440),  # paper: 0.061M
        ("fourierft", "paper-glue", 48_000),  # paper: 0.048M
    ],
)
def test_paper_table1_counts_on_roberta_large_shapes(name, preset, expected):
    with torch.device("meta"):
        model = apply_method(name, _roberta_large_meta(), preset=preset)
    assert count_parameters(model)[0] == expected
