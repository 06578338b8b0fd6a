"""add_weighted_adapter: the combination rules on hand-made vectors, and what they mean for the model."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model

from conftest import tiny_bert, tiny_gpt2
from hut_peft import HUTConfig
from hut_peft.hut.weighted import combine

IDS = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(1))
T = torch.tensor


def _vectors(a, b, g, s):
    return tuple(torch.tensor(v, dtype=torch.float64) for v in (a, b, g, s))


def test_log_rule_on_hand_made_vectors():
    one = _vectors([4.0, 9.0], [1.0, 16.0], [1.0, 4.0], [1.0, -2.0])
    two = _vectors([2.0, 0.5], [8.0, 1.0], [3.0, 2.0], [0.5, 0.5])
    m_a, m_b, gamma, beta = combine([one, two], [0.5, 1.0], "log")
    # m = m1 ** 0.5 * m2: sqrt(4)·2, sqrt(9)·0.5; β = 0.5·β1 + β2
    torch.testing.assert_close(m_a, T([4.0, 1.5], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(m_b, T([8.0, 4.0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(gamma, T([3.0, 4.0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(beta, T([1.0, -0.5], dtype=torch.float64), atol=1e-12, rtol=0)


def test_linear_rule_on_hand_made_vectors_accepts_any_sign():
    one = _vectors([4.0, -1.0], [1.0, 3.0], [1.0, 0.0], [1.0, -2.0])
    two = _vectors([2.0, 0.5], [3.0, 1.0], [3.0, 2.0], [0.5, 0.5])
    m_a, m_b, gamma, beta = combine([one, two], [0.5, 1.0], "linear")
    # m = 1 + 0.5 (m1 − 1) + (m2 − 1)
    torch.testing.assert_close(m_a, T([3.5, -0.5], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(m_b, T([3.0, 2.0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(gamma, T([3.0, 1.5], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(beta, T([1.0, -0.5], dtype=torch.float64), atol=1e-12, rtol=0)


def test_log_rule_refuses_a_non_positive_scale_and_names_the_way_out():
    bad = _vectors([1.0, -0.5], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"m_A has an entry of -0\.5.*combination_type='linear'"):
        combine([bad], [0.5], "log")
    assert combine([bad], [0.0], "log")[0].tolist() == [1.0, 1.0]  # a zero weight never takes a logarithm


def _two_adapters(r1: int = 2, r2: int = 3, shift: bool = True, **extra):
    """A tiny BERT with adapters 'one' and 'two' on query and value, perturbed (scales stay positive)."""
    torch.manual_seed(0)
    kw = dict(target_modules=["query", "value"], init="perturbed", init_std=0.2, shift=shift, **extra)
    model = get_peft_model(tiny_bert(), HUTConfig(r=r1, **kw), adapter_name="one")
    model.add_adapter("two", HUTConfig(r=r2, **kw))
    return model.eval()


def _query(model):
    return model.base_model.model.bert.encoder.layer[0].attention.self.query


def test_model_combination_stores_the_combined_means_in_every_column():
    model = _two_adapters()
    layer = _query(model)
    with torch.no_grad():  # hand-made: M_A columns whose means are 4 and 1 (adapter one, r = 2), 2 and 0.5 (two)
        layer.hut_A["one"].copy_(T([[2.0, 6.0]] * 16 + [[1.0, 1.0]] * 16))
        layer.hut_A["two"].copy_(T([[1.0, 2.0, 3.0]] * 16 + [[0.5, 0.5, 0.5]] * 16))
    model.add_weighted_adapter(["one", "two"], [0.5, 1.0], "mix")
    new = layer.hut_A["mix"]
    assert new.shape == (32, 2)  # r is the first adapter's
    expected = T([4.0 ** 0.5 * 2.0] * 16 + [0.5] * 16)
    torch.testing.assert_close(new[:, 0], expected, atol=1e-6, rtol=0)
    assert torch.equal(new[:, 0], new[:, 1])
    assert not new.requires_grad  # added frozen and inactive, as peft's add_weighted_adapter does
    assert model.active_adapter == "one" and "mix" in model.peft_config


def _output(model, adapters):
    """The last hidden state (logits of these tiny random models are too small to tell adapters apart)."""
    model.base_model.set_adapter(adapters)
    return model(IDS, output_hidden_states=True).hidden_states[-1]


def test_weights_one_one_equal_both_adapters_stacked_without_shift():
    model = _two_adapters(shift=False)
    model.add_weighted_adapter(["one", "two"], [1.0, 1.0], "sum")
    torch.testing.assert_close(_output(model, ["sum"]), _output(model, ["one", "two"]), atol=1e-5, rtol=1e-5)
    assert (_output(model, ["sum"]) - _output(model, ["one"])).abs().max() > 1e-3  # "two" really contributes


def test_minus_one_inverts_an_adapter_and_zero_is_the_identity():
    model = _two_adapters(shift=False)
    with model.disable_adapter():
        base = model(IDS, output_hidden_states=True).hidden_states[-1]
    model.add_weighted_adapter(["one"], [-1.0], "inverse")
    model.add_weighted_adapter(["one", "two"], [0.0, 0.0], "nothing")
    torch.testing.assert_close(_output(model, ["one", "inverse"]), base, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_output(model, ["nothing"]), base, atol=1e-6, rtol=1e-6)
    model.add_weighted_adapter(["one", "one"], [1.0, -1.0], "cancel")
    torch.testing.assert_close(_output(model, ["cancel"]), base, atol=1e-5, rtol=1e-5)


def test_a_layer_without_an_adapter_contributes_the_identity():
    torch.manual_seed(0)
    kw = dict(init="perturbed", init_std=0.2)
    model = get_peft_model(tiny_bert(), HUTConfig(target_modules=["query"], **kw), adapter_name="q")
    model.add_adapter("v", HUTConfig(target_modules=["value"], **kw))
    model.add_weighted_adapter(["q", "v"], [2.0, 1.0], "qv")
    attn = model.base_model.model.bert.encoder.layer[0].attention.self
    torch.testing.assert_close(attn.query.hut_gamma["qv"], attn.query.hut_gamma["q"] ** 2)
    torch.testing.assert_close(attn.query.hut_beta["qv"], 2 * attn.query.hut_beta["q"])
    torch.testing.assert_close(attn.value.hut_gamma["qv"], attn.value.hut_gamma["v"])
    assert model.peft_config["qv"].target_modules == {"query", "value"}


def test_combined_adapter_merges_exactly_and_reloads(tmp_path):
    model = _two_adapters()
    model.add_weighted_adapter(["one", "two"], [0.7, 0.6], "mix")
    model.set_adapter("mix")
    unmerged = model(IDS).logits
    model.save_pretrained(tmp_path, selected_adapters=["mix"])
    torch.manual_seed(0)
    reloaded = PeftModel.from_pretrained(tiny_bert(), tmp_path / "mix", adapter_name="mix").eval()
    torch.testing.assert_close(reloaded(IDS).logits, unmerged, atol=1e-6, rtol=1e-6)
    merged = model.merge_and_unload()
    assert (merged(IDS).logits - unmerged).abs().max().item() <= 1e-5


def test_fused_adapters_combine_block_by_block():
    torch.manual_seed(0)
    kw = dict(target_modules=["c_attn"], fused_slices={"c_attn": [True, False, True]}, init="perturbed", init_std=0.2)
    model = get_peft_model(tiny_gpt2(), HUTConfig(r=2, **kw), adapter_name="one").eval()
    model.add_weighted_adapter(["one"], [1.0], "same")
    torch.testing.assert_close(_output(model, ["same"]), _output(model, ["one"]), atol=1e-6, rtol=1e-6)
    model.add_adapter("plain", HUTConfig(r=2, target_modules=["c_attn"], init="perturbed"))
    with pytest.raises(ValueError, match="share fused_slices"):
        model.add_weighted_adapter(["one", "plain"], [1.0, 1.0], "mixed")


def test_errors_name_the_problem_and_leave_the_model_unchanged():
    model = _two_adapters()
    with torch.no_grad():
        _query(model).hut_gamma["two"][3] = -0.1
    with pytest.raises(ValueError, match=r"at bert\.encoder\.layer\.0\.attention\.self\.query: "
                                         r"combination_type='log' needs positive scales, but gamma"):
        model.add_weighted_adapter(["one", "two"], [1.0, 1.0], "mix")
    assert "mix" not in model.peft_config and "mix" not in _query(model).hut_A
    model.add_weighted_adapter(["one", "two"], [1.0, 1.0], "mix", combination_type="linear")
    with pytest.raises(ValueError, match="an adapter named 'mix' exists already"):
        model.add_weighted_adapter(["one"], [1.0], "mix")
    with pytest.raises(ValueError, match="Adapter three does not exist"):
        model.add_weighted_adapter(["one", "three"], [1.0, 1.0], "x")
    with pytest.raises(ValueError, match="one weight per adapter, got 2 adapters and 1 weights"):
        model.add_weighted_adapter(["one", "two"], [1.0], "x")
    with pytest.raises(ValueError, match="combination_type must be 'log' or 'linear', got 'svd'"):
        model.add_weighted_adapter(["one", "two"], [1.0, 1.0], "x", combination_type="svd")


def test_modules_to_save_one_trained_copy_is_kept_two_are_refused():
    """As peft's LoRA: two trained copies of one module cannot be weighted. (peft's task models, e.g. SEQ_CLS, give
    every adapter its own head copy, so there only one adapter can be combined with others that have none.)"""
    torch.manual_seed(0)
    kw = dict(target_modules=["query", "value"], init="perturbed", init_std=0.2)
    model = get_peft_model(tiny_bert(), HUTConfig(modules_to_save=["classifier"], **kw), adapter_name="head")
    model.add_adapter("plain", HUTConfig(**kw))
    with torch.no_grad():
        model.base_model.model.classifier.modules_to_save["head"].weight.add_(1.0)
    model.add_weighted_adapter(["head", "plain"], [1.0, 1.0], "mix")
    heads = model.base_model.model.classifier.modules_to_save
    assert torch.equal(heads["mix"].weight, heads["head"].weight)
    assert model.peft_config["mix"].modules_to_save == ["classifier"]
    model.add_adapter("head2", HUTConfig(modules_to_save=["classifier"], **kw))
    with pytest.raises(ValueError, match="Cannot add weighted adapters if they target the same module with modules_to_save"):
        model.add_weighted_adapter(["head", "head2"], [1.0, 1.0], "two_heads")
