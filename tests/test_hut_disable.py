"""Disabling HUT adapters with many loaded: peft's semantics, at the cost of the active adapters only (issue 22, item 6).

peft's ``disable_adapter()`` freezes the adapters while inside and restores them on exit; its default toggle touches
every loaded adapter's parameters, and it prints every layer (``repr``) to read the model's status. HUT's layer does
both in O(active adapters): these tests check the semantics and count the work, never time it.
"""

from __future__ import annotations

import torch
from peft import PeftModel, get_peft_model
from torch import nn

from conftest import tiny_llama
from hut_peft import HUTConfig
from hut_peft.hut import HUTLayer

K = 10


def _model() -> PeftModel:
    cfg = dict(r=2, target_modules=["q_proj", "v_proj"], init="perturbed")
    model = get_peft_model(tiny_llama(), HUTConfig(**cfg), adapter_name="a0")
    for i in range(1, K):
        model.add_adapter(f"a{i}", HUTConfig(**cfg))
    return model


def _grads(model: nn.Module) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in model.named_parameters() if ".hut_" in n}


def test_disable_freezes_all_and_restores_exactly(tmp_path) -> None:
    model = _model()
    before = _grads(model)
    assert {n for n, g in before.items() if g} == {n for n in before if n.endswith(".a0")}  # peft: active trains
    x = torch.randint(0, 100, (2, 5))
    with torch.no_grad():
        adapted = model(input_ids=x).logits
        with model.disable_adapter():
            assert not any(_grads(model).values())
            disabled = model(input_ids=x).logits
        base = model(input_ids=x, adapter_names=["__base__"] * 2).logits
    assert _grads(model) == before
    torch.testing.assert_close(disabled, base)
    assert (adapted - base).abs().max() > 1e-4  # the adapter does something, so the check above means something


def test_an_adapter_loaded_for_inference_stays_frozen_after_the_context(tmp_path) -> None:
    model = _model()
    model.save_pretrained(tmp_path, selected_adapters=["a0"])  # peft puts a non-default name in a sub-folder
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path / "a0")
    assert not any(_grads(loaded).values())  # is_trainable=False: inference mode
    with loaded.disable_adapter():
        pass
    assert not any(_grads(loaded).values())  # peft's default toggle would have made it trainable here


def test_toggling_touches_only_the_active_adapters(monkeypatch) -> None:
    model = _model()
    layers = [m for m in model.modules() if isinstance(m, HUTLayer)]
    calls = []
    original = nn.Parameter.requires_grad_

    def counting(self, requires_grad=True):
        calls.append(requires_grad)
        return original(self, requires_grad)

    monkeypatch.setattr(nn.Parameter, "requires_grad_", counting)
    model.base_model.disable_adapter_layers()
    assert len(calls) == len(layers) * 4 and not any(calls)  # hut_A, hut_B, hut_gamma, hut_beta of a0, per layer
    model.base_model.enable_adapter_layers()
    assert len(calls) == len(layers) * 8 and all(calls[len(layers) * 4:])


def test_repr_names_the_adapters_instead_of_printing_their_tensors() -> None:
    layer = next(m for m in _model().modules() if isinstance(m, HUTLayer))
    text = repr(layer)
    assert text.startswith("hut.Linear(\n  (base_layer): Linear(in_features=32")
    assert "(adapters): [a0, a1, a2, a3, ... (10 adapters)]" in text
    assert "Parameter containing" not in text and text.count("\n") == 3
