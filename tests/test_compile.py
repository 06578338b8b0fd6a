"""torch.compile: a HUT model compiles to one graph for training and one for inference, with eager's losses.

HUT's forward once broke dynamo's graph at every adapted layer (``max(<generator>, default=1)`` in the block
count): 16 graph breaks in a training step of a 2-layer Llama with HUT on q and v, and the recompile limit hit
when compiling the whole model. These tests keep it at zero.
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import get_peft_model

from conftest import tiny_gpt2, tiny_llama
from hut_peft import HUTConfig

IDS = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(5))

CASES = {
    "llama-q-v": (tiny_llama, {"target_modules": ["q_proj", "v_proj"]}),
    "llama-q-v-recompute": (tiny_llama, {"target_modules": ["q_proj", "v_proj"], "recompute_base_output": True}),
    "gpt2-fused-q-v": (tiny_gpt2, {"target_modules": ["c_attn"], "fused_slices": {"c_attn": [True, False, True]}}),
}


def _hut(case: str):
    make, options = CASES[case]
    return get_peft_model(make(), HUTConfig(r=4, init="perturbed", init_std=0.1, **options))


def _loss(model, ids: torch.Tensor) -> torch.Tensor:
    # The logits' mean square: GPT-2's own loss function breaks the graph in transformers (not in HUT).
    return model(input_ids=ids).logits.pow(2).mean()


@pytest.mark.parametrize("case", sorted(CASES))
def test_zero_graph_breaks_in_training_and_inference(case):
    torch._dynamo.reset()
    model = _hut(case)
    model.train()
    train = torch._dynamo.explain(lambda ids: _loss(model, ids))(IDS)
    model.eval()
    with torch.no_grad():
        infer = torch._dynamo.explain(lambda ids: model(input_ids=ids).logits)(IDS)
    for explained in (train, infer):
        assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
        assert explained.graph_count == 1


def test_compiled_training_equals_eager_with_no_recompiles():
    torch._dynamo.reset()
    eager = _hut("llama-q-v")
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True)  # fullgraph: any graph break is an error

    def train(model, forward) -> list[float]:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2)
        model.train()
        losses = []
        for _ in range(3):
            loss = _loss(forward, IDS)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return losses

    eager_losses = train(eager, eager)
    with torch._dynamo.config.patch(error_on_recompile=True):  # every step after the first reuses one graph
        compiled_losses = train(compiled_model, compiled)
    assert eager_losses[0] != eager_losses[-1]  # it trained
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5, abs=1e-6)
    eager.eval()
    compiled_model.eval()
    with torch.no_grad():
        diff = (compiled(input_ids=IDS).logits - eager(input_ids=IDS).logits).abs().max().item()
    assert diff <= 1e-5
