"""HUTConfig(recompute_base_output=True): the same gradients as the default path, without saving ``y``."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel, get_peft_model
from torch import nn

from conftest import tiny_gpt2, tiny_llama
from hut_peft import HUTConfig
from hut_peft.hut import Linear as HUTLinear

IDS = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(3))
N, D, K = 5, 6, 4

CASES = {
    "llama-q-v": (tiny_llama, {"target_modules": ["q_proj", "v_proj"]}),
    "gpt2-fused-q-v": (tiny_gpt2, {"target_modules": ["c_attn"], "fused_slices": {"c_attn": [True, False, True]}}),
}


def _loss_and_grads(model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()
    loss = model(input_ids=IDS).logits.pow(2).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_equal_the_default_path(case):
    make, options = CASES[case]
    results = {}
    for recompute in (False, True):
        model = get_peft_model(make(), HUTConfig(r=4, init="perturbed", init_std=0.2,
                                                 recompute_base_output=recompute, **options))
        # the perturbed init draws from the global generator after the seeded base: both variants start equal
        results[recompute] = _loss_and_grads(model)
    (loss, grads), (loss_rc, grads_rc) = results[False], results[True]
    assert loss_rc == loss
    assert grads.keys() == grads_rc.keys() and len(grads) > 0
    for name in grads:
        assert grads[name].abs().max() > 0, name  # a real gradient, not an all-zero comparison
        torch.testing.assert_close(grads_rc[name], grads[name], rtol=0, atol=1e-7, msg=name)


def _saved_activation_shapes(recompute: bool) -> list[tuple[int, ...]]:
    """Shapes of the (N, ·) tensors autograd keeps for the backward of one frozen Linear under HUT."""
    torch.manual_seed(0)
    layer = HUTLinear(nn.Linear(D, K).requires_grad_(False), "default",
                      HUTConfig(r=3, init="perturbed", init_std=0.3, recompute_base_output=recompute))
    x = torch.randn(N, D, requires_grad=True)
    shapes: dict[int, tuple[int, ...]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        shapes[t.untyped_storage().data_ptr()] = tuple(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x).sum().backward()
    return sorted(s for s in shapes.values() if s[0] == N)


def test_recompute_keeps_the_input_but_not_the_base_output():
    assert _saved_activation_shapes(recompute=False) == [(N, K), (N, D)]  # y for ∂C, x for ∂m_A
    assert _saved_activation_shapes(recompute=True) == [(N, D)]  # x only: y is recomputed from it


def test_inference_and_merge_are_unchanged(tmp_path):
    model = get_peft_model(tiny_llama(), HUTConfig(r=4, init="perturbed", shift=False, recompute_base_output=True,
                                                   target_modules=["q_proj", "v_proj"]))
    model.eval()
    with torch.no_grad():
        out = model(input_ids=IDS).logits
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_llama(), tmp_path)
    assert reloaded.peft_config["default"].recompute_base_output is True
    layer = reloaded.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.recompute_base_output == {"default": True}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=IDS).logits, out, rtol=0, atol=0)
        merged = reloaded.merge_and_unload()(input_ids=IDS).logits
    assert (merged - out).abs().max() <= 1e-5


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_composes_with_the_models_gradient_checkpointing(use_reentrant):
    """transformers' own checkpointing (peft's prepare_model_for_kbit_training turns it on) wraps each decoder
    layer; the per-projection recompute nests inside it and the gradients stay the default path's."""
    grads = {}
    for recompute, checkpointing in ((False, False), (True, True)):
        base = tiny_llama()
        if checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
            base.enable_input_require_grads()
        model = get_peft_model(base, HUTConfig(r=4, init="perturbed", init_std=0.2, recompute_base_output=recompute,
                                               target_modules=["q_proj", "v_proj"]))
        grads[recompute] = _loss_and_grads(model)[1]
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, rtol=0, atol=1e-7, msg=name)
