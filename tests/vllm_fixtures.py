"""Models, adapters and the transformers reference shared by the vLLM tests (test_vllm*.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional

import torch

PROMPTS = [[1, 5, 9, 20, 33], [1, 40, 41, 7], [1, 12, 12, 60, 61, 62], [1, 70]]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# name -> (method, config kwargs): attention only (a fused qkv_proj with k left alone), every linear layer,
# row-parallel layers without a shift, and a LoRA to share batches with.
ADAPTERS = {
    "attn": ("hut", dict(target_modules=["q_proj", "v_proj"])),
    "all": ("hut", dict(target_modules=ALL_LINEAR)),
    "rows": ("hut", dict(target_modules=["o_proj", "down_proj"], shift=False)),
    "lora": ("lora", dict(target_modules=["q_proj", "v_proj", "down_proj"], r=8, lora_alpha=16)),
}


def adapted_model(base: Path, method: str, seed: int, **kwargs) -> torch.nn.Module:
    """``base`` with a fresh HUT or LoRA adapter whose values are not the identity (seeded)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from hut_peft import HUTConfig

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(seed)
    if method == "hut":  # perturbed: an untrained HUT adapter is the identity, which would test nothing
        return get_peft_model(model, HUTConfig(r=4, init="perturbed", init_std=0.3, **kwargs))
    peft_model = get_peft_model(model, LoraConfig(**kwargs))
    for name, p in peft_model.named_parameters():  # LoRA's B starts at zero: give it a value
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    return peft_model


def make_served_models(root: Path) -> dict:
    """A tiny Llama vLLM's CPU attention accepts (heads of 32), the adapters above, and broken adapter folders."""
    from hut_peft.lab.models import save_tiny_llama

    base = Path(save_tiny_llama(root / "base", hidden_size=128))
    adapters = {}
    for seed, (name, (method, kwargs)) in enumerate(ADAPTERS.items()):
        adapters[name] = root / "adapters" / name
        adapted_model(base, method, seed=10 + seed, **kwargs).save_pretrained(adapters[name])
    other = Path(save_tiny_llama(root / "other-base", hidden_size=64))
    bad = {"wrong_shapes": root / "bad" / "wrong_shapes"}
    adapted_model(other, "hut", seed=0, target_modules=["q_proj"]).save_pretrained(bad["wrong_shapes"])
    bad["missing_tensor"] = _edited(adapters["attn"], root / "bad" / "missing_tensor",
                                    lambda sd: {k: v for k, v in sd.items() if not k.endswith("q_proj.hut_gamma")})
    bad["not_a_layer"] = _edited(adapters["attn"], root / "bad" / "not_a_layer", lambda sd: {
        **sd, **{k.replace("q_proj", "rotary"): v.clone() for k, v in sd.items() if ".layers.0.self_attn.q_proj." in k}})
    bad["truncated"] = _edited(adapters["attn"], root / "bad" / "truncated", lambda sd: sd)
    weights = bad["truncated"] / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    bad["broken_config"] = _edited(adapters["attn"], root / "bad" / "broken_config", lambda sd: sd)
    (bad["broken_config"] / "adapter_config.json").write_text('{"peft_type": "HUT", "r": ')
    bad["no_weights"] = root / "bad" / "no_weights"
    bad["no_weights"].mkdir(parents=True)
    (bad["no_weights"] / "adapter_config.json").write_text((adapters["attn"] / "adapter_config.json").read_text())
    return {"base": base, "adapters": adapters, "bad": bad}


def _edited(source: Path, target: Path, edit) -> Path:
    from safetensors.torch import load_file, save_file

    target.mkdir(parents=True)
    config = json.loads((source / "adapter_config.json").read_text())
    (target / "adapter_config.json").write_text(json.dumps(config))
    save_file(edit(load_file(source / "adapter_model.safetensors")), target / "adapter_model.safetensors")
    return target


@functools.cache
def _reference_model(base: Path, adapter: Optional[Path]) -> torch.nn.Module:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import hut_peft  # noqa: F401  (registers HUT with peft)

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    return model.eval()


@torch.no_grad()
def greedy_reference(base: Path, adapter: Optional[Path], prompt: list[int], new_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy tokens and their log-probabilities from transformers (+ peft), one full forward per token."""
    model = _reference_model(Path(base), None if adapter is None else Path(adapter))
    ids = torch.tensor([prompt])
    tokens, logprobs = [], []
    for _ in range(new_tokens):
        logits = model(ids).logits[0, -1].float()
        token = int(logits.argmax())
        tokens.append(token)
        logprobs.append(float(torch.log_softmax(logits, -1)[token]))
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokens, logprobs


@torch.no_grad()
def teacher_forced_logprobs(base: Path, adapter: Optional[Path], prompt: list[int], tokens: list[int]) -> list[float]:
    """transformers' (+ peft's) fp32 log-probabilities of ``tokens`` after ``prompt``: one forward, no sampling.

    For engines that do not run fp32 (bf16 serving): their greedy tokens may part from fp32's where two logits
    nearly tie, so the check is how likely the fp32 model finds the tokens the engine chose.
    """
    model = _reference_model(Path(base), None if adapter is None else Path(adapter))
    ids = torch.tensor([prompt + tokens])
    logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
    return [float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(tokens)]
