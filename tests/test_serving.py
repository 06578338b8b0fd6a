"""Serving many adapters: the stacked bank against per-adapter runs, kept in step with adapter changes; bulk
loading; mixed-adapter training; mixed-adapter generate (greedy, sampling, beams) on decoder-only and
encoder-decoder models. Every adapter is perturbed, and each test checks that adapters really differ."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from conftest import tiny_bert, tiny_gpt2, tiny_llama
from hut_peft import HUTConfig, load_adapters
from hut_peft.hut import Linear as HUTLinear
from hut_peft.hut.bank import AdapterRows, model_bank_nbytes, stack_vectors

IDS = torch.randint(3, 100, (4, 7), generator=torch.Generator().manual_seed(1))
QV = ["query", "value"]


def _cfg(targets=QV, init_std: float = 0.3, **kw) -> HUTConfig:
    return HUTConfig(r=2, target_modules=targets, init="perturbed", init_std=init_std, **kw)


def _bert_with(names: list[str]) -> PeftModel:
    torch.manual_seed(0)
    model = get_peft_model(tiny_bert(), _cfg(), adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, _cfg())
    return model.eval()


def _single(model: PeftModel, name: str, fn):
    """``fn()`` with only ``name`` active (the base model for ``"__base__"``)."""
    if name == "__base__":
        with model.disable_adapter():
            return fn()
    model.base_model.set_adapter(name)
    return fn()


def _assert_rows_match(model: PeftModel, names: list[str], ids: torch.Tensor = IDS) -> None:
    with torch.no_grad():
        mixed = model(ids, adapter_names=names).logits
        singles = {n: _single(model, n, lambda: model(ids).logits) for n in set(names)}
    for row, name in enumerate(names):
        torch.testing.assert_close(mixed[row], singles[name][row], atol=1e-6, rtol=1e-6)
    outputs = [singles[n] for n in dict.fromkeys(names)]
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(outputs, outputs[1:]))  # the adapters differ


# ------------------------------------------------------------------------------------------- the bank
def test_stacked_vectors_equal_each_adapter_composed_alone_on_a_fused_layer():
    """Fused, plain and shift-free adapters on one fused layer: each slot equals ``_composed`` of that adapter."""
    torch.manual_seed(0)
    base = Conv1D(3 * 4, 6)
    nn.init.normal_(base.bias)
    layer = HUTLinear(base, "f", _cfg(), fused_mask=[True, False, True])
    layer.update_layer("p", _cfg())
    layer.update_layer("noshift", _cfg(shift=False), fused_mask=[False, True, False])
    a, c, s = stack_vectors(layer, ["noshift", "absent", "f", "p"])
    assert a.shape == (5, 3, 6) and c.shape == s.shape == (5, 3, 4)
    for slot, name in ((1, "noshift"), (3, "f"), (4, "p")):
        for got, want in zip((a[slot], c[slot], s[slot]), layer._composed([name], base.bias)):
            # a plain adapter composes as one block: seen through the 3 blocks, the same numbers
            want = want.expand_as(got) if want.shape[-1] == got.shape[-1] else want.reshape(got.shape)
            torch.testing.assert_close(got, want, atol=0, rtol=0)
    for slot in (0, 2):  # the base and an adapter this layer does not have: the identity
        assert torch.equal(a[slot], torch.ones(3, 6)) and torch.equal(c[slot], torch.ones(3, 4))
        assert torch.equal(s[slot], torch.zeros(3, 4))
    x = torch.randn(4, 5, 6)
    with torch.no_grad():
        mixed = layer(x, adapter_names=["p", "__base__", "f", "noshift"])
        for row, name in enumerate(["p", "__base__", "f", "noshift"]):
            layer.set_adapter([] if name == "__base__" else name)
            torch.testing.assert_close(mixed[row], layer(x)[row], atol=1e-6, rtol=1e-6)


def test_mixed_batch_equals_per_row_runs_with_base_rows():
    model = _bert_with(["a", "b", "c"])
    _assert_rows_match(model, ["c", "__base__", "a", "b"])


def test_mixed_batch_of_adapters_with_different_ranks():
    """Adapters of rank 2 and 5 on one layer stack by their means (peft's matrix mixes r = 8 and r = 4)."""
    model = _bert_with(["a"])
    model.add_adapter("b", HUTConfig(r=5, target_modules=QV, init="perturbed", init_std=0.3))
    _assert_rows_match(model.eval(), ["b", "a", "__base__", "b"])


def test_fused_gpt2_mixed_batch_every_row():
    torch.manual_seed(0)
    fused = {"c_attn": [True, False, True]}
    model = get_peft_model(tiny_gpt2(), _cfg(["c_attn"], fused_slices=fused), adapter_name="a")
    model.add_adapter("b", _cfg(["c_attn"], fused_slices=fused))
    model.add_adapter("plain", _cfg(["c_attn"]))
    _assert_rows_match(model.eval(), ["b", "__base__", "plain", "a"])


def test_bank_follows_add_delete_reload_and_optimiser_steps(tmp_path):
    model = _bert_with(["a", "b"])
    _assert_rows_match(model, ["a", "b", "__base__", "a"])  # builds the bank
    assert model_bank_nbytes(model) > 0
    model.add_adapter("c", _cfg())
    _assert_rows_match(model, ["c", "b", "a", "c"])
    model.delete_adapter("b")
    _assert_rows_match(model, ["c", "a", "__base__", "a"])
    with pytest.raises(ValueError, match="non-existing adapter"):
        model(IDS, adapter_names=["c", "b", "a", "a"])
    # a real optimiser step on one adapter, in training mode, then back to mixed inference
    model.base_model.set_adapter("a")
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(IDS).logits.pow(2).sum().backward()
    opt.step()
    model.eval()
    _assert_rows_match(model, ["c", "a", "__base__", "a"])
    # a hand edit in place, on an adapter the previous batch did not use
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("hut_gamma.c")).mul_(1.5)
    _assert_rows_match(model, ["c", "a", "c", "__base__"])
    # save, delete, load back under the same name: new parameter objects
    model.save_pretrained(tmp_path, selected_adapters=["c"])
    before = model(IDS, adapter_names=["c"] * 4).logits.detach()
    model.delete_adapter("c")
    model.load_adapter(tmp_path / "c", adapter_name="c")
    model.eval()
    torch.testing.assert_close(model(IDS, adapter_names=["c"] * 4).logits, before, atol=1e-6, rtol=1e-6)
    _assert_rows_match(model, ["a", "c", "__base__", "c"])
    # merge and unmerge reassign the base bias
    model.base_model.set_adapter("a")
    model.merge_adapter()
    with pytest.raises(ValueError, match="merged adapters, please call `unmerge_adapter` first"):
        model(IDS, adapter_names=["a", "c", "a", "c"])
    model.unmerge_adapter()
    _assert_rows_match(model, ["a", "c", "__base__", "c"])


def test_bank_built_in_inference_mode_is_refreshed_outside_it():
    model = _bert_with(["a", "b"])
    with torch.inference_mode():
        model(IDS, adapter_names=["a", "b", "a", "b"])
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("hut_gamma.b")).mul_(2.0)
    _assert_rows_match(model, ["a", "b", "__base__", "b"])


def test_row_count_mismatch_names_the_fix():
    model = _bert_with(["a", "b"])
    with pytest.raises(ValueError, match="Length of `adapter_names` should be the same as the number of inputs, but got 2 and 4"):
        model(IDS, adapter_names=["a", "b"])


def test_rows_index_is_resolved_once_per_call():
    rows = AdapterRows(("b", "__base__", "a"), ("a", "b", "c"), expand=2)
    assert rows.present == ("b", "a")
    assert rows.slots("layout", 3, torch.device("cpu")).tolist() == [2, 0, 1]
    assert rows.slots("layout", 6, torch.device("cpu")).tolist() == [2, 2, 0, 0, 1, 1]
    assert rows.slots("present", 3, torch.device("cpu")).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="but got 3 and 5 respectively"):
        rows.names_for(5)


# ------------------------------------------------------------------------------------------- training
def test_mixed_batch_training_updates_each_adapter_from_its_own_rows():
    model = _bert_with(["a", "b"])
    model.set_requires_grad(["a", "b"])
    names = ["a", "b", "b", "a"]
    model(IDS, adapter_names=names).logits.pow(2).sum().backward()
    mixed = {n: p.grad.clone() for n, p in model.named_parameters() if "hut_" in n and p.grad is not None}
    assert {n.rsplit(".", 1)[1] for n in mixed} == {"a", "b"}
    model.zero_grad()
    for name in ("a", "b"):
        rows = [i for i, n in enumerate(names) if n == name]
        _single(model, name, lambda rows=rows: model(IDS[rows]).logits.pow(2).sum().backward())
    for n, p in model.named_parameters():
        if n in mixed:
            torch.testing.assert_close(mixed[n], p.grad, atol=1e-5, rtol=1e-5)
            assert p.grad.abs().max() > 0
    model.train()  # training mode is accepted too
    model(IDS, adapter_names=names).logits.sum().backward()


# ----------------------------------------------------------------------------------------- bulk loading
def _save_tenants(tmp_path, n: int):
    folder = tmp_path / "tenants"
    for i in range(n):
        base = tiny_bert()  # seeds the global generator: reseed per tenant so that the tenants differ
        torch.manual_seed(10 + i)
        get_peft_model(base, _cfg()).save_pretrained(folder / f"t{i}")
    return folder


def test_load_adapters_from_a_folder_equals_peft_load_adapter(tmp_path):
    folder = _save_tenants(tmp_path, 3)
    bulk = get_peft_model(tiny_bert(), _cfg(), adapter_name="seed")
    assert load_adapters(bulk, folder) == ["t0", "t1", "t2"]
    one_by_one = get_peft_model(tiny_bert(), _cfg(), adapter_name="seed")
    for i in range(3):
        one_by_one.load_adapter(folder / f"t{i}", adapter_name=f"t{i}")
    bulk_state, peft_state = bulk.state_dict(), one_by_one.state_dict()
    assert bulk_state.keys() == peft_state.keys()
    assert all(torch.equal(bulk_state[k], peft_state[k]) for k in bulk_state if ".t" in k)
    assert not any(p.requires_grad for n, p in bulk.named_parameters() if ".t" in n)
    _assert_rows_match(bulk.eval(), ["t2", "__base__", "t0", "t1"])


def test_load_adapters_into_a_model_with_other_targets(tmp_path):
    folder = _save_tenants(tmp_path, 2)
    model = get_peft_model(tiny_bert(), _cfg(["key"]), adapter_name="seed")  # no template: peft's path first
    load_adapters(model, {"x": folder / "t0", "y": folder / "t1"})
    _assert_rows_match(model.eval(), ["x", "seed", "y", "__base__"])


def test_load_adapters_errors_leave_the_model_unchanged(tmp_path):
    folder = _save_tenants(tmp_path, 1)
    model = get_peft_model(tiny_bert(), _cfg(), adapter_name="t0")
    with pytest.raises(ValueError, match="Adapter with name t0 already exists"):
        load_adapters(model, folder)
    with pytest.raises(FileNotFoundError, match="No saved adapter"):
        load_adapters(model, tmp_path / "nowhere")
    with pytest.raises(TypeError, match="needs a PeftModel with HUT adapters"):
        load_adapters(tiny_bert(), folder)
    wide = get_peft_model(tiny_bert(), HUTConfig(r=4, target_modules=QV))
    wide.save_pretrained(tmp_path / "wide")
    (tmp_path / "wide" / "adapter_config.json").write_text(
        (tmp_path / "wide" / "adapter_config.json").read_text().replace('"r": 4', '"r": 2'))
    keys = set(model.state_dict())
    with pytest.raises(ValueError, match="does not fit this model"):
        load_adapters(model, {"bad": tmp_path / "wide"})
    assert set(model.state_dict()) == keys and "bad" not in model.peft_config


# ------------------------------------------------------------------------------------------- generation
def _tiny_t5():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=100, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=48, decoder_start_token_id=0,
                   pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(cfg).eval()


def _tiny_bart():
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
                     pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    return BartForConditionalGeneration(cfg).eval()


# Attention and MLP layers (and BART's head), so that adapters on tiny random models change the generated tokens.
MODELS = {"t5": (_tiny_t5, ["q", "v", "o", "wi", "wo"]),
          "bart": (_tiny_bart, ["q_proj", "v_proj", "out_proj", "fc1", "fc2", "lm_head"]),
          "llama": (tiny_llama, ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]),
          "gpt2": (tiny_gpt2, ["c_attn", "c_proj", "c_fc"])}
MODES = {"greedy": {}, "beams": {"num_beams": 3, "num_return_sequences": 2},
         "sampling": {"do_sample": True, "top_k": 1, "num_return_sequences": 2}}  # top_k=1: deterministic sampling


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("arch", list(MODELS))
def test_mixed_generate_equals_each_row_alone(arch, mode):
    build, targets = MODELS[arch]
    torch.manual_seed(0)
    model = get_peft_model(build(), _cfg(targets, init_std=1.0), adapter_name="a")
    model.add_adapter("b", _cfg(targets, init_std=1.0))
    model.eval()
    names = ["b", "__base__", "a"]
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, pad_token_id=0, **MODES[mode])
    prompt = IDS[:1, :5].repeat(3, 1)  # one prompt: rows differ only by their adapter
    mixed = model.generate(input_ids=prompt, adapter_names=names, **kwargs)
    per_row = MODES[mode].get("num_return_sequences", 1)
    for row, name in enumerate(names):
        out = _single(model, name, lambda row=row: model.generate(input_ids=prompt[row:row + 1], **kwargs))
        torch.testing.assert_close(mixed[row * per_row:(row + 1) * per_row], out, atol=0, rtol=0)
    assert len({tuple(r.tolist()) for r in mixed[::per_row]}) == 3  # the adapters really differ


def test_encoder_decoder_beams_from_the_generation_config():
    """num_beams set on the model's generation_config, not passed: the encoder still gets one name per row."""
    torch.manual_seed(0)
    model = get_peft_model(_tiny_bart(), _cfg(["q_proj", "v_proj"]), adapter_name="a")
    model.add_adapter("b", _cfg(["q_proj", "v_proj"]))
    model.eval()
    model.base_model.model.generation_config.num_beams = 2
    kwargs = dict(max_new_tokens=4, min_new_tokens=4, pad_token_id=1)
    mixed = model.generate(input_ids=IDS[:2, :5], adapter_names=["b", "a"], **kwargs)
    model.base_model.set_adapter("a")
    torch.testing.assert_close(mixed[1:], model.generate(input_ids=IDS[1:2, :5], **kwargs), atol=0, rtol=0)
