"""hut_peft.serving.vectors (no engine): a saved HUT folder read, checked and encoded as a serving engine needs.

The reference is hut-peft's own layer: the three vectors must reproduce its forward on a layer with a bias, both
where the engine adds the bias inside the scaled GEMM and where its caller adds it afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from hut_peft import HUTConfig
from hut_peft.serving.vectors import decode, encode, is_hut_payload, module_vectors, read_adapter, shift


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = get_peft_model(Tiny(), HUTConfig(r=3, target_modules=["proj"], init="perturbed", init_std=0.3))
    model.save_pretrained(tmp_path / "hut")
    return model, tmp_path / "hut"


@pytest.mark.parametrize("bias_in_output", [True, False])
def test_vectors_reproduce_the_hut_layer(saved: tuple[torch.nn.Module, Path], bias_in_output: bool) -> None:
    model, folder = saved
    config, modules = read_adapter(folder)
    assert list(modules) == ["proj"] and config["r"] == 3
    v = module_vectors(modules["proj"], "proj", 6, 5)
    w0, b0 = model.base_model.model.proj.base_layer.weight, model.base_model.model.proj.base_layer.bias
    x = torch.randn(4, 6)
    if bias_in_output:
        y = ((x * v.a) @ w0.T + b0) * v.c + shift(v.c, v.gamma, v.beta, b0, bias_in_output=True)
    else:  # the caller adds b0 afterwards (vLLM's skip_bias_add)
        y = ((x * v.a) @ w0.T) * v.c + shift(v.c, v.gamma, v.beta, b0, bias_in_output=False) + b0
    with torch.no_grad():
        expected = model(x)
    assert not torch.allclose(expected, x @ w0.T + b0, atol=1e-3)  # the adapter does something
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-6)


def test_encode_decode_round_trip_and_payload_test(saved: tuple[torch.nn.Module, Path]) -> None:
    _, folder = saved
    v = module_vectors(read_adapter(folder)[1]["proj"], "proj", 6, 5)
    a, b = encode(v, torch.float32)
    assert a.shape == (1, 6) and b.shape == (5, 3) and is_hut_payload(a, b)
    for got, want in zip(decode(a, b), (v.a, v.c, v.gamma, v.beta)):
        torch.testing.assert_close(got, want)
    for r in (1, 3, 8):  # a LoRA of any rank is not mistaken for HUT
        assert not is_hut_payload(torch.zeros(r, 6), torch.zeros(5, r))


def test_a_lora_folder_is_not_hut(tmp_path: Path) -> None:
    get_peft_model(Tiny(), LoraConfig(r=2, target_modules=["proj"])).save_pretrained(tmp_path / "lora")
    with pytest.raises(ValueError, match="peft_type is 'LORA', not 'HUT'"):
        read_adapter(tmp_path / "lora")


def test_bad_tensors_are_named(saved: tuple[torch.nn.Module, Path]) -> None:
    _, folder = saved
    tensors = read_adapter(folder)[1]["proj"]
    with pytest.raises(ValueError, match=r"proj.hut_A has shape \(6, 3\), expected \(7, 3\) for proj"):
        module_vectors(tensors, "proj", 7, 5, where="X")
    with pytest.raises(ValueError, match=r"proj.hut_gamma has shape \(5,\), expected \(4,\)"):
        module_vectors({**tensors, "hut_B": torch.zeros(3, 4)}, "proj", 6, 4)
    no_beta = {k: t for k, t in tensors.items() if k != "hut_beta"}
    with pytest.raises(ValueError, match="proj.hut_beta is missing"):
        module_vectors(no_beta, "proj", 6, 5)
    assert module_vectors(no_beta, "proj", 6, 5, shift=False).beta.eq(0).all()  # shift=False saves no β


def test_folders_an_engine_cannot_serve_are_refused(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    _, folder = saved
    config = json.loads((folder / "adapter_config.json").read_text())
    for field, value, message in [("fused_slices", {"c_attn": [True, False, True]}, "fused_slices"),
                                  ("modules_to_save", ["classifier"], "modules_to_save")]:
        target = tmp_path / field
        target.mkdir()
        (target / "adapter_config.json").write_text(json.dumps({**config, field: value}))
        with pytest.raises(ValueError, match=message):
            read_adapter(target)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "adapter_config.json").write_text(json.dumps(config))
    save_file({**load_file(folder / "adapter_model.safetensors"), "base_model.model.proj.lora_A.weight": torch.zeros(1)},
              stray / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="proj.lora_A.weight is not a HUT tensor"):
        read_adapter(stray)
    (stray / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors"):
        read_adapter(stray)
