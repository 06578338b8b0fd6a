"""`hut-peft bench --sections llm`: one training step at LLM scale, every method side by side in one run.

A published shape (Llama-3-8B's by default: hidden 4,096, MLP 14,336, 32 heads, 8 KV heads) cut to a few layers,
random weights in bf16 on a GPU (fp32 on the CPU), one batch of token ids. Cases: the frozen floor (every weight
frozen, the backward runs into the embeddings), LoRA r = 16 and HUT r = 8 on q,v and on all seven linear layers,
HUT on all linear layers with ``recompute_base_output=True``, (IA)³ on k, v and down, and LoRA and HUT on q,v under
``torch.compile`` (of the model's forward; the backward through AOTAutograd). A step is the bench's shared
training step (timing.py: forward, backward of the mean square of half the features, AdamW). Times are medians of
interleaved repetitions; memory is the peak of one step on CUDA (the allocator's), counted for this case alone:
its weights and optimiser state plus the step's transient peak. On the CPU no peak is reported.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, Optional

import torch
from torch import nn

from .timing import SEED, interleaved_medians, sync, training_step

QV = ["q_proj", "v_proj"]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
COMPILED = ("lora-qv", "hut-qv")
GIB = 2**30


def _cases() -> dict[str, tuple[str, Optional[Callable[[], Any]]]]:
    """case -> (label, peft config maker); the frozen floor has no config."""
    from peft import IA3Config, LoraConfig

    from hut_peft.hut import HUTConfig

    def lora(targets: list[str]) -> Callable[[], Any]:
        return lambda: LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets)

    def hut(targets: list[str], **options: Any) -> Callable[[], Any]:
        return lambda: HUTConfig(r=8, target_modules=targets, shift=False, **options)

    return {
        "frozen": ("frozen floor (backward into the embeddings)", None),
        "lora-qv": ("LoRA r=16, q,v", lora(QV)),
        "hut-qv": ("HUT r=8, q,v", hut(QV)),
        "lora-all": ("LoRA r=16, all linear", lora(ALL_LINEAR)),
        "hut-all": ("HUT r=8, all linear", hut(ALL_LINEAR)),
        "hut-all-recompute": ("HUT r=8, all linear, recompute_base_output=True",
                              hut(ALL_LINEAR, recompute_base_output=True)),
        "ia3": ("(IA)³ k, v, down", lambda: IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                                                      feedforward_modules=["down_proj"])),
    }


def llm_config(arch: str, layers: int, quick: bool) -> Any:
    """The published shape cut to ``layers`` blocks; ``quick``: the same family at toy width (for tests)."""
    from ..archs import arch_config

    config = arch_config(arch, layers)
    if quick:
        config.update(dict(hidden_size=64, intermediate_size=224, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=16, vocab_size=256))
    return config


def _prepare(case: str, make: Optional[Callable[[], Any]], base: nn.Module) -> nn.Module:
    from peft import get_peft_model

    model = copy.deepcopy(base)
    if make is None:
        model.requires_grad_(False)
        model.enable_input_require_grads()
        return model
    return get_peft_model(model, make())


def _resident_bytes(model: nn.Module, step: Callable[[], None]) -> int:
    """Bytes this case keeps between steps: its parameters and its optimiser's state."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    opt = getattr(step, "optimizer", None)  # timing.training_step attaches it
    if opt is not None:
        for state in opt.state.values():
            total += sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    return total


def _peak_gib(model: nn.Module, step: Callable[[], None], device: torch.device) -> Optional[float]:
    """Peak GiB of one step of this case alone (see the module doc); None off CUDA."""
    if device.type != "cuda":
        return None
    step()  # AdamW's state exists from here on
    sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - before + _resident_bytes(model, step)) / GIB


def bench_llm(arch: str = "llama-3-8b", layers: int = 8, batch: int = 4, seq: int = 1024, reps: int = 10,
              warmup: int = 2, device: str | torch.device = "cpu", quick: bool = False,
              compile_backend: Optional[str] = None) -> dict[str, Any]:
    """Step time and peak memory of every case on one random-weight model, with ratios to the floor and to LoRA.

    Raises:
        ValueError: Unknown arch, or ``layers`` < 1 (from archs.arch_config).
    """
    from transformers import LlamaModel

    from ..methods import count_parameters

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    backend = compile_backend or ("inductor" if dev.type == "cuda" else "aot_eager")
    config = llm_config(arch, layers, quick)
    torch.manual_seed(SEED)
    with torch.device(dev):
        base = LlamaModel(config).to(dtype)
    ids = torch.randint(0, config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(SEED)).to(dev)
    inputs = {"input_ids": ids}
    cases = _cases()
    models = {case: _prepare(case, make, base) for case, (_, make) in cases.items()}
    steps = {case: training_step(model, inputs) for case, model in models.items()}
    for case in COMPILED:
        model = _prepare(case, cases[case][1], base)
        models[case + "-compiled"] = model
        steps[case + "-compiled"] = training_step(model, inputs, forward=torch.compile(model, backend=backend))
    del base
    first_compiled_s = {}
    for case in COMPILED:  # the first call traces and compiles, forward and backward: timed apart
        start = time.perf_counter()
        steps[case + "-compiled"]()
        sync(dev)
        first_compiled_s[case] = time.perf_counter() - start
    memory = {case: _peak_gib(models[case], step, dev) for case, step in steps.items()}
    times = interleaved_medians(steps, reps, warmup, dev)
    floor = times["frozen"]
    ratio_to_lora = {f"{m}-{t}{c}": times[f"{m}-{t}{c}"] / times[f"lora-{t}{c}"]
                     for m in ("hut",) for t, c in (("qv", ""), ("all", ""), ("qv", "-compiled"))}
    return {
        "model": f"{arch} shape{' (toy width)' if quick else ''}, {layers} layers, random {str(dtype)[6:]} weights "
                 f"(batch {batch} × {seq})",
        "shape": {k: getattr(config, k) for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                                   "num_key_value_heads", "num_hidden_layers", "vocab_size")},
        "dtype": str(dtype), "compile_backend": backend,
        "labels": {case: label for case, (label, _) in cases.items()} | {
            f"{c}-compiled": cases[c][0] + ", compiled" for c in COMPILED},
        "trainable": {case: count_parameters(model)[0] for case, model in models.items()},
        "first_compiled_step_s": first_compiled_s, "step_s": times, "ratio_to_floor": {k: v / floor for k, v in times.items()},
        "hut_over_lora": ratio_to_lora, "peak_memory_gib": memory,
        "memory_hut_over_lora": {k: memory[k] / memory["lora-" + k.split("-", 1)[1]]
                                 for k in ratio_to_lora if memory[k] is not None},
    }


def to_markdown(result: Optional[dict[str, Any]]) -> list[str]:
    """The LLM table: one row per case, times in ms."""
    if not result:
        return []
    lines = [f"**Training step at LLM scale, {result['model']}** (compiled: torch.compile, {result['compile_backend']})",
             "", "| case | trainable | step (ms) | × frozen floor | peak memory (GiB) |", "|---|---|---|---|---|"]
    for case, label in result["labels"].items():
        mem = result["peak_memory_gib"][case]
        lines.append(f"| {label} | {result['trainable'][case]:,} | {1000 * result['step_s'][case]:.1f} | "
                     f"{result['ratio_to_floor'][case]:.2f} | {'–' if mem is None else f'{mem:.2f}'} |")
    ratios = ", ".join(f"{k} {v:.2f}" for k, v in result["hut_over_lora"].items())
    lines += ["", f"HUT step time / LoRA's: {ratios}."]
    if result["memory_hut_over_lora"]:
        lines.append("HUT peak memory / LoRA's: " + ", ".join(
            f"{k} {v:.2f}" for k, v in result["memory_hut_over_lora"].items()) + ".")
    return lines
