"""HUT core: the maths against an independent construction, merge, peft integration, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

import hut_peft
from conftest import tiny_bert, tiny_gpt2, tiny_llama
from hut_peft import HUTConfig
from hut_peft.hut import Linear as HUTLinear

IDS = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(1))


def _eq8_9_reference(x, w0_in_out, b0, m_a_mat, m_b_mat, gamma, beta):
    """Eq. 8–9 built literally: W_new = (M_A 1_A)/r ⊙ W0 ⊙ (1_B M_B)/r; h = γ ⊙ (x W_new + b0) + β."""
    d, k = w0_in_out.shape
    r = m_a_mat.shape[1]
    ones_a = torch.ones(r, k, dtype=torch.float64)  # 1_A ∈ R^{r×k}
    ones_b = torch.ones(d, r, dtype=torch.float64)  # 1_B ∈ R^{d×r}
    w_new = (m_a_mat @ ones_a) / r * w0_in_out * (ones_b @ m_b_mat) / r
    return gamma * (x @ w_new + b0) + beta


def _perturbed_layer(base: nn.Module, r: int = 3) -> HUTLinear:
    torch.manual_seed(0)
    layer = HUTLinear(base, "default", HUTConfig(r=r, init="perturbed", init_std=0.3))
    return layer


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_forward_matches_equations_8_and_9(kind):
    torch.manual_seed(0)
    d, k = 5, 7  # non-square: a transposition bug cannot hide
    base = nn.Linear(d, k) if kind == "linear" else Conv1D(k, d)
    if kind == "conv1d":
        nn.init.normal_(base.bias)
    layer = _perturbed_layer(base)
    x = torch.randn(2, 4, d)
    w0 = base.weight.detach().double()
    w0_in_out = w0.T if kind == "linear" else w0
    expected = _eq8_9_reference(
        x.double(), w0_in_out, base.bias.detach().double(),
        layer.hut_A["default"].detach().double(), layer.hut_B["default"].detach().double(),
        layer.hut_gamma["default"].detach().double(), layer.hut_beta["default"].detach().double(),
    )
    got = layer(x)
    assert got.shape == (2, 4, k)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, base(x), atol=1e-3)  # the adapter is really doing something


def test_identity_at_init_is_exact():
    base = nn.Linear(6, 4)
    layer = HUTLinear(base, "default", HUTConfig(r=8))
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), base(x))


def test_merge_hand_written_integers():
    """W' = diag(m_A) W0 diag(γ m_B), b' = γ b0 + β on integers worked by hand."""
    base = nn.Linear(2, 2)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # (out, in)
        base.bias.copy_(torch.tensor([1.0, -1.0]))
    layer = HUTLinear(base, "default", HUTConfig(r=2))
    with torch.no_grad():
        layer.hut_A["default"].copy_(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))  # m_A = [2, 2]
        layer.hut_B["default"].copy_(torch.tensor([[1.0, 0.0], [1.0, 2.0]]))  # m_B = [1, 1]
        layer.hut_gamma["default"].copy_(torch.tensor([2.0, 3.0]))
        layer.hut_beta["default"].copy_(torch.tensor([0.5, 0.0]))
    layer.merge()
    # row o of W (out, in) scales by γ_o m_B,o; column i by m_A,i
    assert torch.equal(base.weight, torch.tensor([[4.0, 8.0], [18.0, 24.0]]))
    assert torch.equal(base.bias, torch.tensor([2.5, -3.0]))


def _train_one_step(model, batch):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    out = model(**batch)
    out.loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()


def _batch(kind):
    if kind == "bert":
        return {"input_ids": IDS, "labels": torch.tensor([0, 1, 1])}
    return {"input_ids": IDS, "labels": IDS}


BUILDERS = {
    "bert": (tiny_bert, ["query", "value"], {"task_type": "SEQ_CLS"}),
    "gpt2": (tiny_gpt2, ["c_attn", "c_proj"], {}),  # c_attn is 32 -> 96: non-square Conv1D
    "llama": (tiny_llama, ["q_proj", "v_proj"], {"shift": False}),  # no attention bias
}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_merge_is_exact_after_a_real_step(kind):
    build, targets, extra = BUILDERS[kind]
    base = build()
    base_logits = base(IDS).logits
    model = get_peft_model(base, HUTConfig(r=4, target_modules=targets, **extra))
    _train_one_step(model, _batch(kind))
    unmerged = model(IDS).logits
    assert (unmerged - base_logits).abs().max() > 1e-4
    model.merge_adapter()
    model.merge_adapter()  # idempotent
    assert (model(IDS).logits - unmerged).abs().max() <= 1e-5
    model.unmerge_adapter()
    assert (model(IDS).logits - unmerged).abs().max() <= 1e-5
    with model.disable_adapter():
        assert (model(IDS).logits - base_logits).abs().max() <= 1e-5
    merged = model.merge_and_unload(safe_merge=True)
    assert type(merged) is type(base)
    assert not any("hut_" in n for n, _ in merged.named_parameters())
    assert (merged(IDS).logits - unmerged).abs().max() <= 1e-5


def test_only_adapter_parameters_change_and_base_is_bit_identical():
    base = tiny_bert()
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = get_peft_model(base, HUTConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    _train_one_step(model, _batch("bert"))
    for name, param in model.named_parameters():
        if param.requires_grad:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        if key in before:
            assert torch.equal(param, before[key]), name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("hut_" in n) or ("classifier" in n) for n in trainable)


def test_state_dict_keys():
    model = get_peft_model(tiny_bert(), HUTConfig(r=2, target_modules=["value"], task_type="SEQ_CLS"))
    keys = {k for k in model.state_dict() if "hut_" in k}
    expected = {
        f"base_model.model.bert.encoder.layer.{i}.attention.self.value.hut_{p}.default"
        for i in range(2) for p in ("A", "B", "gamma", "beta")
    }
    assert keys == expected


def test_trainable_count_roberta_large_shape_is_the_papers_0_9M():
    from transformers import RobertaConfig, RobertaModel

    cfg = RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    with torch.device("meta"):
        model = get_peft_model(RobertaModel(cfg), HUTConfig(r=8, target_modules=["query", "value"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 884_736 == 24 * 2 * (1024 * 8 + 8 * 1024 + 2 * 1024)


def test_rank_collapses_r1_and_r8_train_identically():
    """DESIGN §1.4: from the identity init under AdamW, every column of M_A gets the same update."""
    losses = {}
    for r in (1, 8):
        model = get_peft_model(tiny_bert(), HUTConfig(r=r, target_modules=["query", "value"], task_type="SEQ_CLS"))
        model.double().train()  # float64: what remains is Adam's eps, not rounding
        # Each column of M_A gets 1/r of m_A's gradient; Adam is invariant to that scale except through eps,
        # which is negligible at real gradient sizes but not on this tiny model: set it out of the way.
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, eps=1e-16)
        torch.manual_seed(3)
        trace = []
        for _ in range(30):
            loss = model(**_batch("bert")).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            trace.append(loss.item())
        losses[r] = trace
        m_a = model.base_model.model.bert.encoder.layer[0].attention.self.query.hut_A["default"]
        assert torch.allclose(m_a, m_a[:, :1].expand_as(m_a))  # all r columns stayed equal
    assert losses[1][-1] < losses[1][0]
    assert losses[1] == pytest.approx(losses[8], rel=1e-6)


def _sgd_run(r: int, means_lr: float, steps: int) -> tuple[list[float], torch.Tensor]:
    """Losses of ``steps`` SGD steps, and m_A of the first adapted query layer at the end."""
    torch.manual_seed(0)
    model = get_peft_model(tiny_bert(), HUTConfig(r=r, target_modules=["query", "value"], task_type="SEQ_CLS"))
    model.double().eval()  # float64 and no dropout: any difference is the optimiser's
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    means = [p for n, p in params.items() if "hut_A" in n or "hut_B" in n]
    rest = [p for n, p in params.items() if not ("hut_A" in n or "hut_B" in n)]
    opt = torch.optim.SGD([{"params": means, "lr": means_lr}, {"params": rest, "lr": 0.5}])
    trace = []
    for _ in range(steps):
        loss = model(**_batch("bert")).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        trace.append(loss.item())
    m_a = model.base_model.model.bert.encoder.layer[0].attention.self.query.hut_A["default"].detach().mean(dim=-1)
    return trace, m_a


def test_under_sgd_rank_r_is_rank_1_with_the_means_at_lr_over_r():
    """Each column of M_A gets 1/r of m_A's gradient and SGD does not rescale it (Adam does, see above): the
    mean moves lr/r as fast. So r = 8 at 8x the means' learning rate is r = 1; at the same rate it is slower."""
    losses_1, m_a_1 = _sgd_run(1, means_lr=0.5, steps=10)
    losses_8, m_a_8 = _sgd_run(8, means_lr=0.5 * 8, steps=10)
    assert losses_1[-1] < losses_1[0]
    assert max(abs(a - b) for a, b in zip(losses_1, losses_8)) < 1e-12
    torch.testing.assert_close(m_a_8, m_a_1, atol=1e-12, rtol=0)
    (_, step_1), (_, step_8) = _sgd_run(1, means_lr=0.5, steps=1), _sgd_run(8, means_lr=0.5, steps=1)
    assert (step_1 - 1).abs().max() > 1e-9
    torch.testing.assert_close(step_8 - 1, (step_1 - 1) / 8, atol=1e-14, rtol=1e-6)  # one step: exactly 1/r


def test_mixed_batch_equals_per_adapter_runs():
    torch.manual_seed(0)
    model = get_peft_model(
        tiny_bert(), HUTConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS", init="perturbed", init_std=0.2)
    )
    other = HUTConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS", init="perturbed", init_std=0.2)
    model.add_adapter("other", other)
    model.eval()
    names = ["default", "other", "__base__"]
    mixed = model(IDS, adapter_names=names).logits
    for row, name in enumerate(names):
        if name == "__base__":
            with model.disable_adapter():
                single = model(IDS).logits
        else:
            model.set_adapter(name)
            single = model(IDS).logits
        torch.testing.assert_close(mixed[row], single[row], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match=r"Trying to infer with non-existing adapter\(s\): typo"):
        model(IDS, adapter_names=["default", "typo", "other"])


def test_misuse_raises_peft_s_own_error_texts():
    """peft's tests and tools match these texts (LoRA's), so HUT raises the same ones."""
    torch.manual_seed(0)
    cfg = dict(r=2, target_modules=["query", "value"], task_type="SEQ_CLS", init="perturbed", init_std=0.2)
    model = get_peft_model(tiny_bert(), HUTConfig(**cfg))
    model.add_adapter("other", HUTConfig(**cfg))
    model.eval()  # (a mixed batch in training mode trains each adapter on its rows: tests/test_serving.py)
    with pytest.raises(ValueError, match=r"Length of `adapter_names` should be the same as the number of inputs, "
                                         r"but got 2 and 3 respectively"):
        model(IDS, adapter_names=["default", "other"])
    with pytest.raises(TypeError, match=r"Got adapter names of type <class 'str'>, expected a list of str"):
        model(IDS, adapter_names="default")
    model.merge_adapter(["default"])
    with pytest.raises(ValueError, match=r"Cannot pass `adapter_names` when there are merged adapters, please call "
                                         r"`unmerge_adapter` first\."):
        model(IDS, adapter_names=["default", "other", "__base__"])
    model.unmerge_adapter()
    before = model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer.weight.clone()
    with torch.no_grad():
        model.base_model.model.bert.encoder.layer[0].attention.self.query.hut_gamma["other"][0] = float("inf")
    model.set_adapter("other")
    with pytest.raises(ValueError, match="NaNs detected in the merged weights. The adapter other seems to be broken"):
        model.merge_adapter(safe_merge=True)
    assert torch.equal(model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer.weight, before)


def test_mixed_batch_in_generate_with_beams():
    torch.manual_seed(0)
    model = get_peft_model(tiny_gpt2(), HUTConfig(r=2, target_modules=["c_attn"], init="perturbed", init_std=0.3))
    model.add_adapter("other", HUTConfig(r=2, target_modules=["c_attn"], init="perturbed", init_std=0.3))
    model.eval()
    prompt = IDS[:2, :4]
    kwargs = dict(max_new_tokens=4, num_beams=2, do_sample=False, pad_token_id=0)
    mixed = model.generate(input_ids=prompt, adapter_names=["default", "other"], **kwargs)
    model.set_adapter("other")
    single = model.generate(input_ids=prompt[1:], **kwargs)
    assert torch.equal(mixed[1], single[0])


def test_named_adapters_add_set_delete():
    model = get_peft_model(tiny_bert(), HUTConfig(r=2, target_modules=["query"], task_type="SEQ_CLS"))
    model.add_adapter("b", HUTConfig(r=2, target_modules=["query"], task_type="SEQ_CLS"))
    model.set_adapter("b")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and "hut_" in n]
    assert trainable and all(n.endswith(".b") for n in trainable)
    model.delete_adapter("b")
    assert not any(n.endswith("hut_A.b") for n, _ in model.named_parameters())


def test_low_precision_base_with_fp32_adapter():
    base = tiny_llama().to(torch.bfloat16)
    model = get_peft_model(base, HUTConfig(r=2, target_modules=["q_proj", "v_proj"], shift=False, init="perturbed"))
    hut_params = [p for n, p in model.named_parameters() if "hut_" in n]
    assert all(p.dtype == torch.float32 for p in hut_params)
    out = model(IDS).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert all(p.grad is not None for p in hut_params)
    model.merge_adapter()
    q = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    assert q.weight.dtype == torch.bfloat16


def test_save_and_reload_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = get_peft_model(
        tiny_bert(seed=5), HUTConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS", init="perturbed")
    )
    _train_one_step(model, _batch("bert"))
    expected = model(IDS).logits
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["peft_type"] == "HUT"
    script = textwrap.dedent(f"""
        import sys, json, torch
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        import hut_peft
        from peft import PeftModel
        from conftest import tiny_bert
        ids = torch.tensor({IDS.tolist()})
        model = PeftModel.from_pretrained(tiny_bert(seed=5), {str(tmp_path / 'adapter')!r}).eval()
        print(json.dumps(model(ids).logits.tolist()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("r", [0, -1, 1.5])
def test_rank_below_one_is_refused(r):
    with pytest.raises(ValueError, match=r"HUTConfig.r must be an integer >= 1"):
        HUTConfig(r=r)


def test_target_matching_nothing_lists_real_names():
    with pytest.raises(ValueError, match=r"matched no module.*query.*Pass some of these names"):
        get_peft_model(tiny_bert(), HUTConfig(target_modules=["q_projection"]))


def test_unsupported_layer_type_is_named():
    with pytest.raises(TypeError, match=r"cannot adapt .*LayerNorm"):
        get_peft_model(tiny_bert(), HUTConfig(target_modules=["LayerNorm"]))


def test_checkpoint_that_does_not_fit(tmp_path):
    model = get_peft_model(tiny_bert(), HUTConfig(r=2, target_modules=["query"], task_type="SEQ_CLS"))
    model.save_pretrained(tmp_path)
    from transformers import BertConfig, BertForSequenceClassification

    wider = BertForSequenceClassification(
        BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    )
    with pytest.raises(ValueError, match=r"does not fit this model.*hut_A"):
        PeftModel.from_pretrained(wider, tmp_path)


def test_unmerge_refuses_a_zero_factor():
    layer = HUTLinear(nn.Linear(3, 2), "default", HUTConfig(r=1))
    with torch.no_grad():
        layer.hut_A["default"][0, 0] = 0.0
    layer.merge()
    with pytest.raises(ValueError, match=r"Cannot unmerge .*m_A"):
        layer.unmerge()


def test_merge_refuses_a_quantised_base():
    base = nn.Linear(3, 2)
    base.weight = nn.Parameter(torch.zeros(2, 3, dtype=torch.int8), requires_grad=False)
    layer = HUTLinear(base, "default", HUTConfig(r=1))
    with pytest.raises(ValueError, match="quantised"):
        layer.merge()


def test_shift_into_a_bias_free_layer_is_refused_with_the_fix():
    layer = HUTLinear(nn.Linear(3, 2, bias=False), "default", HUTConfig(r=1))
    with torch.no_grad():
        layer.hut_beta["default"].fill_(0.1)
    with pytest.raises(ValueError, match=r"shift=False"):
        layer.merge()


def test_registered_with_peft():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import PeftType

    assert PeftType.HUT == "HUT" and PEFT_TYPE_TO_CONFIG_MAPPING["HUT"] is HUTConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["HUT"] is hut_peft.HUTModel
    hut_peft.hut.register_hut()  # idempotent


# ------------------------------------------------------------------------------ fused projections
FUSED = {"c_attn": [True, False, True]}  # GPT-2: q and v adapted, k frozen (paper, LoRA's MergedLinear)


def test_fused_slices_adapt_q_and_v_and_leave_k_exact():
    torch.manual_seed(0)
    d, ks = 8, 8
    base = Conv1D(3 * ks, d)
    nn.init.normal_(base.bias)
    layer = HUTLinear(base, "default", HUTConfig(r=2, init="perturbed", init_std=0.3), fused_mask=FUSED["c_attn"])
    assert tuple(layer.hut_A["default"].shape) == (2, d, 2) and tuple(layer.hut_gamma["default"].shape) == (2, ks)
    x = torch.randn(2, 3, d)
    out, ref = layer(x), base(x)
    torch.testing.assert_close(out[..., ks:2 * ks], ref[..., ks:2 * ks], atol=1e-6, rtol=1e-6)  # k untouched
    w0, b0 = base.weight.detach().double(), base.bias.detach().double()
    for adapted, block in ((0, 0), (1, 2)):
        cols = slice(block * ks, (block + 1) * ks)
        expected = _eq8_9_reference(
            x.double(), w0[:, cols], b0[cols],
            layer.hut_A["default"][adapted].detach().double(), layer.hut_B["default"][adapted].detach().double(),
            layer.hut_gamma["default"][adapted].detach().double(), layer.hut_beta["default"][adapted].detach().double(),
        )
        torch.testing.assert_close(out[..., cols].double(), expected, atol=1e-5, rtol=1e-5)
    layer.merge()
    torch.testing.assert_close(base(x), out, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(base(x), ref, atol=1e-5, rtol=1e-5)


def test_fused_gpt2_merge_mixed_batch_and_reload(tmp_path):
    torch.manual_seed(0)
    cfg = HUTConfig(r=2, target_modules=["c_attn"], fused_slices=FUSED, init="perturbed", init_std=0.2)
    model = get_peft_model(tiny_gpt2(), cfg)
    model.add_adapter("other", HUTConfig(r=2, target_modules=["c_attn"], fused_slices=FUSED, init="perturbed"))
    model.eval()
    expected = model(IDS).logits
    mixed = model(IDS, adapter_names=["default", "other", "__base__"]).logits
    torch.testing.assert_close(mixed[0], expected[0], atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["fused_slices"] == FUSED
    reloaded = PeftModel.from_pretrained(tiny_gpt2(), tmp_path).eval()
    torch.testing.assert_close(reloaded(IDS).logits, expected, atol=1e-6, rtol=1e-6)
    model.merge_adapter()
    assert (model(IDS).logits - expected).abs().max() <= 1e-5


def test_fused_count_gpt2_medium_shape():
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(n_embd=1024, n_layer=24, n_head=16)
    with torch.device("meta"):
        model = get_peft_model(GPT2Model(cfg), HUTConfig(r=4, target_modules=["c_attn"], fused_slices=FUSED))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 24 * 2 * (1024 * 4 + 4 * 1024 + 2 * 1024) == 491_520


def test_fused_slices_are_validated():
    with pytest.raises(ValueError, match="fused_slices"):
        HUTConfig(fused_slices={"c_attn": [False, False]})
    with pytest.raises(ValueError, match="not divisible by 3"):
        HUTLinear(nn.Linear(4, 8), "default", HUTConfig(r=1), fused_mask=[True, False, True])


def test_merge_and_unload_with_a_roberta_classification_head():
    """peft's generic module swap fails on RobertaClassificationHead (no weight); ours does not."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=70)
    model = get_peft_model(RobertaForSequenceClassification(cfg).eval(),
                           HUTConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS", init="perturbed"))
    expected = model(IDS + 2).logits
    merged = model.merge_and_unload()
    assert type(merged) is RobertaForSequenceClassification
    torch.testing.assert_close(merged(IDS + 2).logits, expected, atol=1e-5, rtol=1e-5)
