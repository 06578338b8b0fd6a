"""The benchmark's measuring tools on hand-made cases, and `bench --quick` end to end (no timing asserted)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hut_peft.cli import main
from hut_peft.lab.bench.run import memory_mib, saved_tensor_bytes
from hut_peft.lab.bench.timing import interleaved_medians

N, K = 3, 6  # rows and features of the hand-made cases


class _Chain(nn.Module):
    """``u = (x ⊙ w1) ⊙ w2``: autograd saves x (for w1's grad) and x ⊙ w1 (for w2's); the loss saves u."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Parameter(torch.ones(K)), nn.Parameter(torch.ones(K))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x * self.w1 * self.w2,)


class _Shared(nn.Module):
    """``u = x ⊙ w1 + xᵀᵀ ⊙ w2``: both products save x (one storage, seen through a view the second time)."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Parameter(torch.ones(K)), nn.Parameter(torch.ones(K))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x * self.w1 + x.t().t() * self.w2,)


def test_saved_tensor_bytes_counts_distinct_storages_by_hand():
    x = torch.randn(N, K)
    assert saved_tensor_bytes(_Chain(), {"x": x}) == 3 * N * K * 4  # x, x ⊙ w1, and u (for the loss's square)
    assert saved_tensor_bytes(_Shared(), {"x": x}) == 2 * N * K * 4  # x once, and u
    frozen = _Chain().requires_grad_(False)
    assert saved_tensor_bytes(frozen, {"x": x.clone().requires_grad_()}) == 4 * N * K  # only u: w1, w2 are params


def test_memory_counts_trainable_state_and_frozen_weights():
    model = _Chain()
    model.w2.requires_grad_(False)
    mem = memory_mib(model, {"x": torch.randn(N, K)}, torch.device("cpu"))
    mib = 2**20
    assert mem["trainable_state_mib"] * mib == 4 * K * 4  # w1, its gradient and AdamW's two moments
    assert mem["frozen_weights_mib"] * mib == K * 4
    assert mem["saved_activations_mib"] * mib == 2 * N * K * 4  # x (for w1) and u; x ⊙ w1 is not needed
    assert mem["total_mib"] == pytest.approx(mem["saved_activations_mib"] + 5 * K * 4 / mib)


def test_repetitions_are_interleaved_round_robin():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    medians = interleaved_medians(fns, reps=2, warmup=1)
    assert calls == ["a", "b", "c"] * 3 and set(medians) == {"a", "b", "c"}


def test_bench_quick_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--threads", "1", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["quick"] and result["hardware"]["threads"] == 1 and result["hardware"]["torch"] == torch.__version__
    assert [t["model"].split(" (")[0] for t in result["training"]] == ["tiny BERT", "tiny Llama"]
    for training in result["training"]:
        assert set(training["step_s"]) == {"frozen", "hut", "hut-recompute", "lora", "ia3", "full"}
        memory = training["memory"]
        assert memory["hut-recompute"]["saved_activations_mib"] < memory["hut"]["saved_activations_mib"]
        assert training["step_ratio_to_floor"]["frozen"] == pytest.approx(1.0)
        assert training["trainable"]["frozen"] == 0 and training["trainable"]["hut"] > training["trainable"]["ia3"]
        assert training["memory"]["full"]["trainable_state_mib"] > training["memory"]["hut"]["trainable_state_mib"]
    assert set(result["inference"]["latency_s"]) == {"base", "hut_unmerged", "hut_merged"}
    assert result["inference"]["merged_max_abs_difference"] < 1e-4  # merged is the same function
    assert result["mixed"]["adapters"] == 8 and result["mixed"]["rows"] % 8 == 0
    compiled = result["compile"]
    assert compiled["backend"] == "aot_eager" and compiled["graph_breaks"] == {"hut": 0, "lora": 0}
    assert set(compiled["step_s"]) == {"hut_eager", "hut_compiled", "lora_eager", "lora_compiled"}
    assert max(compiled["loss_abs_difference"].values()) < 1e-5
    qlora = result["qlora"]
    if qlora.get("skipped"):
        assert "bitsandbytes" in qlora["skipped"]
    else:
        assert "4-bit" in qlora["model"] and set(qlora["step_s"]) == {"hut", "hut-recompute", "lora"}
        assert qlora["memory"]["hut"]["frozen_weights_mib"] == qlora["memory"]["lora"]["frozen_weights_mib"]
    serving = result["serving"]
    assert [row["k"] for row in serving["rows"]] == [1, 4] and {"hut", "lora"} <= set(serving["methods"])
    for row in serving["rows"]:
        assert set(row["forward_ratio"]) == set(row["generate_ratio"]) == set(row["disabled_ratio"]) == set(serving["methods"])
        assert row["memory_mib"]["hut_bank"] > 0 and row["hut_load_s"] > 0
    # the bank holds the base and every loaded adapter: K + 1 slots of (d + 2k) floats per adapted layer
    assert serving["rows"][1]["memory_mib"]["hut_bank"] == pytest.approx(5 / 2 * serving["rows"][0]["memory_mib"]["hut_bank"])
    assert result["bulk_load"]["adapters"] == 4 and result["bulk_load"]["load_s"] > 0
    stdout = capsys.readouterr().out
    assert "| hut |" in stdout and "Mixed-adapter batch" in stdout and "Serving K adapters" in stdout
    assert main(["bench", "--models", "gpt5"]) == 2 and "Unknown bench model 'gpt5'" in capsys.readouterr().err
    assert main(["bench", "--sections", "servng"]) == 2 and "Unknown bench section 'servng'" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lora", "road"])
def test_cloned_adapters_are_real_distinct_adapters(method):
    """The serving bench measures LoRA and RoAd on copies made by ``clone_adapter``: each copy must be a working
    adapter of its own (mixed rows equal its single-adapter run, and differ from the source)."""
    import peft
    from peft import get_peft_model

    from conftest import tiny_llama
    from hut_peft.lab.bench.serving import _adapter_params, _configs, _perturb_, clone_adapter

    if method == "road" and not hasattr(peft, "RoadConfig"):
        pytest.skip("this peft has no RoAd")
    gen = torch.Generator().manual_seed(0)
    model = get_peft_model(tiny_llama(), _configs(group_size=8)[method](), adapter_name="c0")
    _perturb_(_adapter_params(model, "c0"), gen)
    clone_adapter(model, "c0", "c1", gen)
    model.eval()
    ids = torch.randint(3, 100, (2, 5), generator=gen)
    with torch.no_grad():
        mixed = model(ids, adapter_names=["c1", "c0"]).logits
        model.base_model.set_adapter("c1")
        torch.testing.assert_close(mixed[0], model(ids).logits[0], atol=1e-6, rtol=1e-6)
        model.base_model.set_adapter("c0")
        torch.testing.assert_close(mixed[1], model(ids).logits[1], atol=1e-6, rtol=1e-6)
        assert (model(ids).logits[0] - mixed[0]).abs().max() > 1e-5
