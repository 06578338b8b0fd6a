"""`hut-peft bench`: training-step time, memory, inference latency and mixed-adapter throughput of HUT
against LoRA, (IA)³, full fine-tuning and the frozen floor, measured side by side in one run.

Method: every model variant starts from the same weights; timings are medians of interleaved repetitions
(round-robin over the variants, after warm-up), so drifts in machine load hit all variants alike. Memory
on CPU is what training keeps: the bytes of the distinct tensors autograd saves for the backward
(``saved_tensors_hooks``), plus trainable parameters, their gradients and AdamW's two moments; on CUDA the
peak allocated memory. No timing is asserted anywhere; the ratios are the result.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

TRAIN_METHODS = ("frozen", "hut", "lora", "ia3", "full")


def _median_interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _prepare(name: str, base: nn.Module) -> nn.Module:
    from .methods import apply_method

    model = copy.deepcopy(base)
    if name == "frozen":
        for p in model.parameters():
            p.requires_grad_(False)
        model.enable_input_require_grads()  # backward runs into the input: the floor every adapter pays
        return model
    return apply_method(name, model)


def _step_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[Callable[[], None], torch.optim.Optimizer | None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5) if params else None
    model.train()

    def step() -> None:
        out = model(**batch)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits
        hidden.float().pow(2).mean().backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step, opt


def _memory_mib(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    params = {id(p): p for p in model.parameters()}
    param_ptrs = {p.untyped_storage().data_ptr() for p in params.values()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**batch)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits
    hidden.float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    activations = sum(n for ptr, n in storages.items() if ptr not in param_ptrs)
    trainable = sum(p.numel() * p.element_size() for p in params.values() if p.requires_grad)
    return {"activations_mib": activations / 2**20, "trainable_state_mib": 4 * trainable / 2**20,
            "total_mib": (activations + 4 * trainable) / 2**20}


def _load(name: str, quick: bool) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    """A base model and a batch: the embedded encoder, the embedded decoder, or a RoBERTa-large slice."""
    from transformers import AutoModel

    from .flops import build_arch
    from .models import resolve_model

    torch.manual_seed(0)
    if quick:
        from transformers import BertConfig, BertModel

        model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64))
        return model, {"input_ids": torch.randint(0, 100, (2, 16))}, "tiny-bert"
    if name == "minilm":
        src = resolve_model("minilm")
        model = AutoModel.from_pretrained(src.path)
        return model, {"input_ids": torch.randint(1000, 20000, (16, 128))}, "all-MiniLM-L6-v2 (batch 16 × 128)"
    if name == "smollm2":
        src = resolve_model("smollm2")
        model = AutoModel.from_pretrained(src.path, **src.kwargs())
        return model, {"input_ids": torch.randint(1000, 40000, (4, 64))}, "SmolLM2-135M (batch 4 × 64)"
    if name == "roberta-large-slice":
        model = build_arch("roberta-large", device="cpu", layers=2)
        return model, {"input_ids": torch.randint(1000, 40000, (4, 128))}, "RoBERTa-large shape, 2 layers (batch 4 × 128)"
    raise ValueError(f"Unknown bench model {name!r}.")


def bench_training(name: str, quick: bool, reps: int, warmup: int) -> dict[str, Any]:
    base, batch, label = _load(name, quick)
    models = {m: _prepare(m, base) for m in TRAIN_METHODS}
    steps = {m: _step_fn(model, batch)[0] for m, model in models.items()}
    times = _median_interleaved(steps, reps, warmup)
    memory = {m: _memory_mib(model, batch) for m, model in models.items()}
    return {"model": label, "step_s": times, "memory": memory,
            "ratio_to_floor": {m: times[m] / times["frozen"] for m in times},
            "ratio_to_lora": {m: times[m] / times["lora"] for m in times},
            "memory_ratio_to_lora": {m: memory[m]["total_mib"] / memory["lora"]["total_mib"] for m in memory}}


def bench_inference(quick: bool, reps: int, warmup: int) -> dict[str, Any]:
    from peft import get_peft_model

    from .hut import HUTConfig

    base, batch, label = _load("minilm", quick)
    base.eval()
    unmerged = get_peft_model(copy.deepcopy(base), HUTConfig(r=8, target_modules=["query", "value"], init="perturbed"))
    unmerged.eval()
    merged = copy.deepcopy(unmerged).merge_and_unload()
    fns = {}
    for key, model in (("base", base), ("hut_unmerged", unmerged), ("hut_merged", merged)):
        fns[key] = (lambda m: (lambda: m(**batch)))(model)
    with torch.no_grad():
        times = _median_interleaved(fns, reps, warmup)
    return {"model": label, "latency_s": times, "ratio_to_base": {k: v / times["base"] for k, v in times.items()}}


def bench_mixed(quick: bool, reps: int, warmup: int, n_adapters: int = 8) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model

    from .hut import HUTConfig

    base, batch, label = _load("minilm", quick)
    ids = batch["input_ids"].repeat(n_adapters, 1)[:n_adapters]  # one row per adapter
    results = {}
    for method, make in (("hut", lambda: HUTConfig(r=8, target_modules=["query", "value"], init="perturbed")),
                         ("lora", lambda: LoraConfig(r=8, target_modules=["query", "value"], init_lora_weights=False))):
        model = get_peft_model(copy.deepcopy(base), make(), adapter_name="a0")
        for i in range(1, n_adapters):
            model.add_adapter(f"a{i}", make())
        model.eval()
        names = [f"a{i}" for i in range(n_adapters)]
        fns = {"single": lambda m=model: m(input_ids=ids),
               "mixed": lambda m=model, n=names: m(input_ids=ids, adapter_names=n)}
        with torch.no_grad():
            times = _median_interleaved(fns, reps, warmup)
        results[method] = {"latency_s": times, "mixed_over_single": times["mixed"] / times["single"]}
    return {"model": label, "rows": int(ids.shape[0]), "adapters": n_adapters, **results}


def hardware() -> dict[str, Any]:
    info = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": None}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                 if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def to_markdown(result: dict[str, Any]) -> str:
    lines = [f"Hardware: {result['hardware'].get('cpu_model', result['hardware']['cpu'])}, "
             f"torch {result['hardware']['torch']}, {result['hardware']['threads']} threads.", ""]
    for t in result["training"]:
        lines += [f"**Training step, {t['model']}**", "",
                  "| method | step (s) | × frozen floor | × LoRA | activations (MiB) | trainable state (MiB) | memory × LoRA |",
                  "|---|---|---|---|---|---|---|"]
        for m in TRAIN_METHODS:
            mem = t["memory"][m]
            lines.append(f"| {m} | {t['step_s'][m]:.4f} | {t['ratio_to_floor'][m]:.3f} | {t['ratio_to_lora'][m]:.3f} | "
                         f"{mem['activations_mib']:.1f} | {mem['trainable_state_mib']:.1f} | "
                         f"{t['memory_ratio_to_lora'][m]:.3f} |")
        lines.append("")
    inf = result["inference"]
    lines += [f"**Inference latency, {inf['model']}**", "", "| model | latency (s) | × base |", "|---|---|---|"]
    lines += [f"| {k} | {v:.4f} | {inf['ratio_to_base'][k]:.3f} |" for k, v in inf["latency_s"].items()]
    mix = result["mixed"]
    lines += ["", f"**Mixed-adapter batch, {mix['model']}: {mix['rows']} rows, {mix['adapters']} adapters (one per row)**", "",
              "| method | single adapter (s) | one adapter per row (s) | mixed / single |", "|---|---|---|---|"]
    for m in ("hut", "lora"):
        lines.append(f"| {m} | {mix[m]['latency_s']['single']:.4f} | {mix[m]['latency_s']['mixed']:.4f} | "
                     f"{mix[m]['mixed_over_single']:.3f} |")
    return "\n".join(lines) + "\n"


def run_bench(quick: bool = False, models: Optional[list[str]] = None, reps: int = 7, warmup: int = 2) -> dict[str, Any]:
    torch.manual_seed(0)
    models = models or ["minilm", "roberta-large-slice", "smollm2"]
    latency_reps = reps * 3  # forward-only measurements are shorter and noisier
    if quick:
        models, reps, warmup, latency_reps = models[:1], 1, 1, 1
    result = {"hardware": hardware(), "reps": reps, "warmup": warmup,
              "training": [bench_training(m, quick, reps, warmup) for m in models],
              "inference": bench_inference(quick, latency_reps, warmup),
              "mixed": bench_mixed(quick, latency_reps, warmup)}
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="Tiny random models and few repetitions (for tests).")
    parser.add_argument("--models", default="minilm,roberta-large-slice,smollm2",
                        help="Training-step models: minilm, roberta-large-slice, smollm2.")
    parser.add_argument("--reps", type=int, default=7, help="Timed repetitions per variant (interleaved).")
    parser.add_argument("--output", help="Write the results as JSON here (atomically).")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice).")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft bench`."""
    from .train.common import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_bench(args.quick, [m for m in args.models.split(",") if m], args.reps)
    print(to_markdown(result))
    if args.output:
        write_json_atomic(Path(args.output), result)
    return 0
