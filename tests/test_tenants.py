"""Many tenants trained together (hut/tenants.py, tenant_data.py, tenant_training.py): each tenant's adapter equals
its own run, adapters are created in time linear in their number, and they save, reload and serve as peft's."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from hut_peft import HUTConfig, add_adapters
from hut_peft.hut.model import HUTModel
from hut_peft.hut.tenant_data import plan_tenants
from hut_peft.hut.tenant_training import TenantTrainingArgs, train_jointly, train_separately
from hut_peft.hut.tenants import TenantAdamW, TenantBank

TARGETS = ["q_proj", "v_proj", "down_proj"]


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    return LlamaForCausalLM(config)


def tenant_rows(sizes: dict[str, int], seed: int = 1) -> tuple[list[dict], list[str]]:
    """Rows of uneven lengths, the first tokens of some unlabelled (a prompt), as tenant_data.tokenize_row makes them."""
    gen = torch.Generator().manual_seed(seed)
    rows, tenants = [], []
    for tenant, n in sizes.items():
        for _ in range(n):
            length = int(torch.randint(4, 11, (1,), generator=gen))
            ids = torch.randint(3, 64, (length,), generator=gen).tolist()
            prompt = int(torch.randint(0, 3, (1,), generator=gen))
            rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
            tenants.append(tenant)
    return rows, tenants


def hut_state(model, tenant: str) -> dict[str, torch.Tensor]:
    return {k.replace(f".{tenant}", ""): v.detach().clone() for k, v in model.state_dict().items()
            if "hut_" in k and k.endswith(f".{tenant}")}


SIZES = {"alpha": 7, "beta": 3, "gamma": 12}


@pytest.mark.parametrize("max_grad_norm", [None, 0.05])
def test_joint_run_equals_separate_runs(max_grad_norm) -> None:
    rows, tenants = tenant_rows(SIZES)
    # Steps of at most 5 rows with batches of 2: not every tenant fits in each step, and "beta" ends early.
    plan = plan_tenants(tenants, batch_size=2, epochs=2, seed=3, rows_per_step=5)
    assert any(len(step) < len(SIZES) for step in plan.steps)
    args = TenantTrainingArgs(learning_rate=2e-2, weight_decay=0.01, max_grad_norm=max_grad_norm)
    config = HUTConfig(r=2, target_modules=TARGETS)
    names = list(SIZES)

    joint = get_peft_model(tiny_llama(), copy.deepcopy(config), adapter_name=names[0])
    add_adapters(joint, names[1:], config)
    finished: list[str] = []
    joint_losses = train_jointly(joint, rows, plan, args, pad_token_id=0, on_finished=finished.append)
    assert sorted(finished) == sorted(names)

    separate = get_peft_model(tiny_llama(), copy.deepcopy(config), adapter_name=names[0])
    separate_losses = train_separately(separate, rows, plan, args, pad_token_id=0, config=config, keep=True)

    for tenant in names:
        a, b = hut_state(joint, tenant), hut_state(separate, tenant)
        assert a.keys() == b.keys() and len(a) == 4 * 2 * len(TARGETS)
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
        assert max((b[k] - (0.0 if "beta" in k else 1.0)).abs().max().item() for k in b) > 1e-3  # it trained
        assert joint_losses[tenant] == pytest.approx(separate_losses[tenant], abs=1e-5)
    if max_grad_norm is not None:  # the clip was active: without it the adapters differ
        unclipped = get_peft_model(tiny_llama(), copy.deepcopy(config), adapter_name=names[0])
        add_adapters(unclipped, names[1:], config)
        train_jointly(unclipped, rows, plan, TenantTrainingArgs(learning_rate=2e-2, weight_decay=0.01,
                                                                max_grad_norm=None), pad_token_id=0)
        a, b = hut_state(joint, "gamma"), hut_state(unclipped, "gamma")
        assert max((a[k] - b[k]).abs().max().item() for k in a) > 1e-4


def test_plan_gives_each_tenant_the_same_batches_whatever_the_others() -> None:
    _, tenants = tenant_rows(SIZES)
    full = plan_tenants(tenants, batch_size=2, epochs=2, seed=3, rows_per_step=5)
    alone = plan_tenants([t for t in tenants if t == "beta"], batch_size=2, epochs=2, seed=3)
    offset = tenants.index("beta")
    assert [[i + offset for i in b] for b in alone.batches["beta"]] == full.batches["beta"]
    for step in full.steps:
        assert len({t for t, _ in step}) == len(step)
        assert sum(len(full.batches[t][j]) for t, j in step) <= 5 or len(step) == 1
    order = {t: [j for step in full.steps for s, j in step if s == t] for t in SIZES}
    assert all(js == list(range(len(full.batches[t]))) for t, js in order.items())
    rest = full.without(["alpha"])
    assert "alpha" not in rest.batches and rest.batches["gamma"] == full.batches["gamma"]


def test_add_adapters_equals_add_adapter_and_walks_the_model_once(monkeypatch) -> None:
    config = HUTConfig(r=2, target_modules=TARGETS, init="perturbed", init_std=0.1)
    names = [f"t{i}" for i in range(6)]
    one_by_one = get_peft_model(tiny_llama(), copy.deepcopy(config), adapter_name="base")
    torch.manual_seed(7)
    for name in names:
        one_by_one.add_adapter(name, copy.deepcopy(config))
    together = get_peft_model(tiny_llama(), copy.deepcopy(config), adapter_name="base")
    walks = []
    original = HUTModel.inject_adapter
    monkeypatch.setattr(HUTModel, "inject_adapter", lambda self, *a, **k: walks.append(1) or original(self, *a, **k))
    torch.manual_seed(7)
    assert add_adapters(together, names, config) == names
    assert walks == []  # "base" already targets these modules: no name goes through peft's walk of the model
    a, b = one_by_one.state_dict(), together.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    grads = {n: p.requires_grad for n, p in one_by_one.named_parameters()}
    assert grads == {n: p.requires_grad for n, p in together.named_parameters()}
    assert one_by_one.peft_config.keys() == together.peft_config.keys()
    with pytest.raises(ValueError, match="already exists"):
        add_adapters(together, ["t1"], config)
    with pytest.raises(ValueError, match="without '.'"):
        add_adapters(together, ["a.b"], config)


def test_new_targeting_walks_once_then_adds_directly(monkeypatch) -> None:
    model = get_peft_model(tiny_llama(), HUTConfig(r=1, target_modules=["q_proj"]), adapter_name="base")
    walks = []
    original = HUTModel.inject_adapter
    monkeypatch.setattr(HUTModel, "inject_adapter", lambda self, *a, **k: walks.append(1) or original(self, *a, **k))
    add_adapters(model, ["x", "y", "z"], HUTConfig(r=1, target_modules=["q_proj", "v_proj"]))
    assert len(walks) == 1
    assert all(n in model.base_model.model.model.layers[0].self_attn.v_proj.hut_A for n in "xyz")


def test_tenant_adamw_matches_torch_adamw_with_schedule_and_clip() -> None:
    """Single tenant, hand-made gradients: TenantAdamW is torch's AdamW + clip_grad_norm_ + LambdaLR."""
    from transformers import get_linear_schedule_with_warmup

    model = get_peft_model(tiny_llama(), HUTConfig(r=1, target_modules=["q_proj"]), adapter_name="a")
    bank = TenantBank(model, ["a"])
    opt = TenantAdamW(bank, lr=0.1, weight_decay=0.1, max_grad_norm=0.5, total_steps={"a": 4}, warmup_steps=1)
    reference = bank.data[0].clone().requires_grad_()
    ref_opt = torch.optim.AdamW([reference], lr=0.1, weight_decay=0.1)
    schedule = get_linear_schedule_with_warmup(ref_opt, 1, 4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        grad = torch.randn(bank.width, generator=gen)
        with bank.step(model, ["a"]) as joint:
            offset = 0
            for leaves in joint.leaves.values():
                for leaf in leaves.values():
                    leaf.grad = grad[offset:offset + leaf.numel()].view_as(leaf).clone()
                    offset += leaf.numel()
        opt.step(joint)
        reference.grad = grad.clone()
        torch.nn.utils.clip_grad_norm_([reference], 0.5)
        ref_opt.step()
        schedule.step()
    assert (bank.data[0] - reference.detach()).abs().max().item() <= 1e-6
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.hut_gamma["a"].data_ptr() != reference.data_ptr()
    assert torch.equal(torch.cat([layer.hut_A["a"].reshape(-1), layer.hut_B["a"].reshape(-1)]),
                       bank.data[0, : layer.hut_A["a"].numel() + layer.hut_B["a"].numel()])


RELOAD = """
import json, sys, torch
import hut_peft
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1])
names = json.loads(sys.argv[3])
model = PeftModel.from_pretrained(base, f"{sys.argv[2]}/{names[0]}", adapter_name=names[0])
hut_peft.load_adapters(model, {n: f"{sys.argv[2]}/{n}" for n in names[1:]})
model.eval()
ids = torch.tensor(json.loads(sys.argv[4]))
with torch.no_grad():
    logits = model(input_ids=ids, adapter_names=json.loads(sys.argv[5])).logits
torch.save(logits, sys.argv[6])
"""


def test_saved_tenants_reload_in_a_fresh_process_and_serve_mixed(tmp_path: Path) -> None:
    rows, tenants = tenant_rows(SIZES)
    plan = plan_tenants(tenants, batch_size=3, epochs=1, seed=0)
    config = HUTConfig(r=1, target_modules=TARGETS)
    names = list(SIZES)
    base = tiny_llama()
    base.save_pretrained(tmp_path / "base")
    model = get_peft_model(base, copy.deepcopy(config), adapter_name=names[0])
    add_adapters(model, names[1:], config)

    def save(tenant: str) -> None:
        model.save_pretrained(tmp_path / "saved", selected_adapters=[tenant])

    train_jointly(model, rows, plan, TenantTrainingArgs(learning_rate=5e-2), pad_token_id=0, on_finished=save)
    # Each tenant's file holds its own tensors only, not the bank its parameters are views of.
    one = sum(v.numel() for v in hut_state(model, "alpha").values()) * 4
    assert all((tmp_path / "saved" / n / "adapter_model.safetensors").stat().st_size < one + 16_384 for n in names)
    ids = [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [5, 9, 13, 17]]
    per_row = ["gamma", "alpha", "beta", "__base__"]
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(ids), adapter_names=per_row).logits
    script = tmp_path / "reload.py"
    script.write_text(textwrap.dedent(RELOAD))
    subprocess.run([sys.executable, str(script), str(tmp_path / "base"), str(tmp_path / "saved"), json.dumps(names),
                    json.dumps(ids), json.dumps(per_row), str(tmp_path / "logits.pt")], check=True)
    got = torch.load(tmp_path / "logits.pt")
    assert (got - expected).abs().max().item() <= 1e-5
    assert (expected[0] - expected[3]).abs().max().item() > 1e-4  # the adapters changed the model
