"""The method registry on tiny BERT, RoBERTa, GPT-2 and Llama: every method builds (or says clearly why not),
counts match closed forms, an optimiser step changes exactly the trainable tensors, merges are exact, saves
round-trip, and the CLI lists the registry."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from conftest import tiny_bert, tiny_gpt2, tiny_llama
from hut_peft.cli import main as cli_main
from hut_peft.lab.methods import (
    METHODS,
    apply_method,
    count_parameters,
    get_method,
    load_trainable,
    merge_method,
    resolve_targets,
    save_trainable,
)
from hut_peft.lab.methods.arch import ROLE_NAMES, role_modules


def tiny_roberta(seed: int = 0):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=70, num_labels=2)
    return RobertaForSequenceClassification(cfg).eval()


ARCHS = {"bert": tiny_bert, "roberta": tiny_roberta, "gpt2": tiny_gpt2, "llama": tiny_llama}
IDS = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(0))
CANNOT = {
    ("llama", "bitfit"): r"'bitfit' cannot apply to LlamaForCausalLM \(model_type 'llama'\).*has none",
    ("bert", "prefix"): r"'prefix' cannot apply to BertForSequenceClassification.*past key values",
    ("roberta", "prefix"): r"'prefix' cannot apply to RobertaForSequenceClassification.*past key values",
}
CASES = [(k, n) for k in ARCHS for n in METHODS if (k, n) not in CANNOT]
# Methods whose freshly built model equals the base model exactly (FourierFT and prefix start elsewhere).
IDENTITY_AT_INIT = {n for n in METHODS if n not in ("fourierft", "prefix")}
# full, FT^Top2 and BitFit "merge" trivially (nothing to fold): the merge test covers the others.
MERGING = [n for n, m in METHODS.items() if m.merges and n not in ("full", "ft_top2", "bitfit")]


def _loss(model: torch.nn.Module, kind: str) -> torch.Tensor:
    labels = torch.tensor([0, 1]) if kind in ("bert", "roberta") else IDS
    return model(input_ids=IDS, labels=labels).loss


def _steps(model: torch.nn.Module, kind: str, steps: int = 1, lr: float = 1e-2) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        _loss(model, kind).backward()
        opt.step()
    model.eval()


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("kind,name", [c for c in CANNOT])
def test_methods_that_cannot_apply_say_which_and_why(kind, name):
    with pytest.raises(ValueError, match=CANNOT[(kind, name)]):
        apply_method(name, ARCHS[kind]())


@pytest.mark.parametrize("kind,name", CASES)
def test_identity_then_steps_change_exactly_the_trainables_then_save_round_trips(kind, name, tmp_path):
    """One build per case, to keep the suite fast: (1) methods that start at the base model do so exactly;
    (2) two AdamW steps (the second reaches tensors behind a zero-initialised one, e.g. LoRA's A, an adapter's
    down projection) move every trainable tensor and leave every frozen one bit-identical; (3) save_trainable
    and load_trainable on a fresh base reproduce the outputs exactly."""
    base_logits = _logits(ARCHS[kind](seed=3))
    torch.manual_seed(0)
    model = apply_method(name, ARCHS[kind](seed=3)).eval()
    if name in IDENTITY_AT_INIT:
        torch.testing.assert_close(_logits(model), base_logits, rtol=0, atol=1e-6)
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _steps(model, kind, steps=2)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[n]), f"trainable {n} did not change"
        else:
            assert torch.equal(p, before[n]), f"frozen {n} changed"
    expected = _logits(model)
    save_trainable(model, tmp_path)
    torch.manual_seed(1)  # a different init of the method's own tensors: everything trained must come from disk
    reloaded = load_trainable(ARCHS[kind](seed=3), tmp_path).eval()
    torch.testing.assert_close(_logits(reloaded), expected, rtol=0, atol=0)


@pytest.mark.parametrize("kind", list(ARCHS))
@pytest.mark.parametrize("name", MERGING)
def test_merging_methods_merge_exactly_into_the_base_architecture(kind, name):
    if (kind, name) in CANNOT:
        pytest.skip("cannot apply")
    base_logits, base_keys = _logits(ARCHS[kind]()), set(ARCHS[kind]().state_dict())
    torch.manual_seed(0)
    model = apply_method(name, ARCHS[kind]())
    _steps(model, kind, steps=1)
    unmerged = _logits(model)
    assert (unmerged - base_logits).abs().max() > 1e-4  # the step moved the output: the merge is not vacuous
    merged = merge_method(model)
    assert (_logits(merged) - unmerged).abs().max() <= 1e-5
    assert set(merged.state_dict()) == base_keys  # the base architecture again: loads into a fresh model


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if not m.merges])
def test_non_merging_methods_refuse_to_merge(name):
    model = apply_method(name, tiny_gpt2())
    with pytest.raises(ValueError, match="does not merge"):
        merge_method(model)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.source == "peft" or n == "hut"])
def test_peft_methods_round_trip_through_peft(kind, name, tmp_path):
    if (kind, name) in CANNOT:
        pytest.skip("cannot apply")
    torch.manual_seed(0)
    model = apply_method(name, ARCHS[kind](seed=3))
    assert isinstance(model, PeftModel)
    _steps(model, kind, steps=1)
    expected = _logits(model)
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(ARCHS[kind](seed=3), tmp_path).eval()
    torch.testing.assert_close(_logits(reloaded), expected, rtol=0, atol=1e-6)


def test_load_trainable_refuses_another_base(tmp_path):
    save_trainable(apply_method("hut", tiny_bert()), tmp_path)
    with pytest.raises(ValueError, match="does not fit method 'hut'"):
        from transformers import BertConfig, BertForSequenceClassification

        load_trainable(BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2,
                                                                num_attention_heads=4, intermediate_size=37)), tmp_path)
    with pytest.raises(ValueError, match="not built by hut_peft.lab.methods.apply_method"):
        save_trainable(tiny_bert(), tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="method.json"):
        load_trainable(tiny_bert(), tmp_path / "missing")


# ----------------------------------------------------------------------------------------- counts
def _dims(kind: str) -> dict[str, int]:
    """Closed-form ingredients: width d, layers L, FFN width f, value/key width kv, fused q|k|v width, head."""
    if kind in ("bert", "roberta"):
        return {"d": 32, "L": 2, "f": 37, "kv": 32, "head": 32 * 2 + 2 if kind == "bert" else 32 * 32 + 32 + 32 * 2 + 2}
    if kind == "gpt2":
        return {"d": 32, "L": 2, "f": 128, "kv": 32, "head": 0}
    return {"d": 32, "L": 2, "f": 48, "kv": 16, "head": 0}  # Llama: 4 heads of 8, 2 key/value heads


def _expected(kind: str, name: str) -> int:
    g = _dims(kind)
    d, L, f, kv, head = g["d"], g["L"], g["f"], g["kv"], g["head"]
    m, r = 64, 8
    adapter = 2 * d * m + m + d

    def qv(per_matrix) -> int:  # q (d -> d) and v (d -> kv) on their own, or the fused d -> 3d once on GPT-2
        return L * (per_matrix(d, d) + per_matrix(d, kv))

    def hut(din: int, dout: int) -> int:
        return din * r + r * dout + dout + (dout if kind != "llama" else 0)  # Llama: shift off (no bias)

    formulas = {
        "lora": (lambda: L * r * (d + 3 * d)) if kind == "gpt2" else (lambda: qv(lambda a, b: r * (a + b))),
        "hira": (lambda: L * r * (d + 3 * d)) if kind == "gpt2" else (lambda: qv(lambda a, b: r * (a + b))),
        "vera": (lambda: L * (256 + 3 * d)) if kind == "gpt2" else (lambda: qv(lambda a, b: 256 + b)),
        "fourierft": (lambda: L * 1000) if kind == "gpt2" else (lambda: qv(lambda a, b: min(1000, d * kv))),
        "hut": (lambda: L * 2 * hut(d, d)) if kind == "gpt2" else (lambda: qv(hut)),  # GPT-2: q, v blocks of c_attn
        "ia3": lambda: L * ((3 * d if kind == "gpt2" else 2 * kv) + f),
        "hadamard_adapter": lambda: L * (d if kind == "llama" else 2 * d),
        "hadapter": lambda: 2 * L * adapter,
        "padapter": lambda: L * adapter,
        "ladapter": lambda: L * (adapter + 2 * d),
        "prefix": lambda: 16 * 2 * L * kv,
    }
    return formulas[name]() + head


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("name", ["lora", "hira", "vera", "fourierft", "hut", "ia3", "hadamard_adapter", "hadapter",
                                  "padapter", "ladapter", "prefix"])
def test_trainable_counts_match_closed_forms(kind, name):
    if (kind, name) in CANNOT:
        pytest.skip("cannot apply")
    assert count_parameters(apply_method(name, ARCHS[kind]()))[0] == _expected(kind, name)


def test_requires_grad_filters_count_what_they_say():
    model = tiny_bert()
    total = count_parameters(model)[1]
    assert count_parameters(apply_method("full", tiny_bert())) == (total, total)
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    assert count_parameters(apply_method("bitfit", tiny_bert()))[0] == biases + 32 * 2  # + classifier weight
    gpt2 = tiny_gpt2()
    top = sum(p.numel() for p in gpt2.transformer.h[-2:].parameters()) + 2 * 32  # + final LayerNorm
    assert count_parameters(apply_method("ft_top2", gpt2))[0] == top
    llama = tiny_llama()
    top1 = sum(p.numel() for p in llama.model.layers[-1].parameters()) + 32  # + final RMSNorm
    assert count_parameters(apply_method("ft_top2", llama, layers=1))[0] == top1


# --------------------------------------------------------------------------------- targets, presets
@pytest.mark.parametrize("kind", list(ARCHS))
def test_resolved_suffixes_select_exactly_the_role(kind):
    model = ARCHS[kind]()
    names = [n for n, _ in model.named_modules()]
    for role in ROLE_NAMES:
        try:
            suffixes = resolve_targets(model, role)
        except ValueError as err:
            assert role == "attn_fused" and "has no 'attn_fused'" in str(err)
            continue
        hit = [n for n in names if any(n == s or n.endswith("." + s) for s in suffixes)]
        assert hit == role_modules(model, role)


def test_resolved_suffixes_read_as_documented():
    assert resolve_targets(tiny_bert(), "attn_out") == ["attention.output.dense"]
    assert resolve_targets(tiny_roberta(), "ffn_out") == ["layer.0.output.dense", "layer.1.output.dense"]
    assert resolve_targets(tiny_gpt2(), "attn_out") == ["attn.c_proj"]
    assert resolve_targets(tiny_gpt2(), "query") == ["c_attn"]
    assert resolve_targets(tiny_llama(), "ffn_in") == ["gate_proj", "up_proj"]


@pytest.mark.parametrize("name,preset", [(n, p) for n, m in METHODS.items() for p in m.presets])
def test_every_preset_builds(name, preset):
    model = apply_method(name, tiny_gpt2(), preset=preset)
    assert count_parameters(model)[0] > 0
    assert model.hut_peft_method == {"method": name, "task_type": "CAUSAL_LM", "options": METHODS[name].presets[preset]}


def test_classification_heads_train_for_every_method():
    for name in METHODS:
        if name == "prefix":
            continue
        model = apply_method(name, tiny_roberta())
        heads = [n for n, p in model.named_parameters() if "classifier" in n and p.requires_grad]
        assert any("out_proj.weight" in n for n in heads), name


# --------------------------------------------------------------------------------------- errors, CLI
def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"Unknown method 'lorra'\. Did you mean 'lora'\? Known methods: full, "):
        get_method("lorra")
    with pytest.raises(ValueError, match="Method 'hut' has no preset 'nope'; its presets: paper-glue, paper-e2e"):
        apply_method("hut", tiny_bert(), preset="nope")
    with pytest.raises(ValueError, match="Method 'lora': unknown option.*rank for peft's LoraConfig"):
        apply_method("lora", tiny_bert(), rank=4)
    with pytest.raises(ValueError, match="Method 'padapter' takes the options bottleneck and activation, got size"):
        apply_method("padapter", tiny_bert(), size=4)
    with pytest.raises(ValueError, match="bottleneck must be an integer >= 1"):
        apply_method("hadapter", tiny_bert(), bottleneck=0)
    with pytest.raises(ValueError, match="give roles or target_modules, not both"):
        apply_method("lora", tiny_bert(), roles=["query"], target_modules=["query"])
    with pytest.raises(ValueError, match="Unknown role 'q'"):
        apply_method("hut", tiny_bert(), roles=["q"])
    with pytest.raises(ValueError, match="'ft_top2': layers must be an integer in 1..2"):
        apply_method("ft_top2", tiny_bert(), layers=3)
    with pytest.raises(ValueError, match="Method 'lora' cannot apply to BertForSequenceClassification"):
        apply_method("lora", tiny_bert(), target_modules=["q_proj"])
    with pytest.raises(ValueError, match="already a PeftModel"):
        apply_method("lora", apply_method("hut", tiny_bert()))
    with pytest.raises(ValueError, match="needs a task_type"):
        from transformers import GPT2Config, GPT2Model

        apply_method("prefix", GPT2Model(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4)))


def test_cli_lists_every_method(capsys):
    assert cli_main(["methods"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["name", "description", "source"]
    assert [line.split()[0] for line in out[1:]] == list(METHODS)
    assert cli_main(["methods", "--markdown"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("| name |") and len(rows) == len(METHODS) + 2
    assert any(r.startswith("| hut |") and "| yes | 0.01 | paper-glue, paper-e2e |" in r for r in rows)
