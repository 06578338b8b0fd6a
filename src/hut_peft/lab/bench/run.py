"""`hut-peft bench`: training-step time, memory, inference latency and mixed-adapter throughput of HUT against
LoRA, (IA)³, full fine-tuning and the frozen floor, measured side by side in one run; HUT with
``recompute_base_output=True``; eager against ``torch.compile``; and QLoRA-style training on a 4-bit base.

Method (docs/performance.md):

- Every variant of a model starts from the same weights (deep copies of one base) and sees the same batch.
- Timings are medians of interleaved repetitions: after warm-up rounds, each repetition runs every variant
  once, round-robin, so drifts in machine load hit all variants alike. No timing is asserted anywhere.
- A training step is forward, backward of the mean square of half the features, and an AdamW step (``zero_grad(set_to_none)``).
- The frozen floor has every parameter frozen, but the input embeddings' output requires grad, so the backward
  runs through every layer down to the input: the work any adapter in the first layer pays.
- Memory on CPU has no allocator peak to read, so it is counted: the distinct storages autograd saves for the
  backward (``torch.autograd.graph.saved_tensors_hooks``; parameters excluded), plus trainable parameters,
  their gradients and AdamW's two moments (4 × their bytes), plus the frozen weights (a 4-bit weight with its
  quantisation constants). On CUDA it is
  ``torch.cuda.max_memory_allocated`` over one training step, measured after a step has created AdamW's state.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .timing import MIB, SEED, interleaved_medians, sync, training_loss, training_step

TRAIN_METHODS = ("frozen", "hut", "hut-recompute", "lora", "ia3", "full")
COMPILE_METHODS = ("hut", "lora")
QLORA_METHODS = ("hut", "hut-recompute", "lora")
# Bench variants that are a registry method with options: HUTConfig(recompute_base_output=True).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"hut-recompute": ("hut", {"recompute_base_output": True})}
SECTIONS = ("training", "inference", "mixed", "compile", "qlora", "serving")  # the default run
ALL_SECTIONS = SECTIONS + ("llm",)  # llm: a GPU-sized model (llm.py), only on request
BENCH_MODELS = ("minilm", "roberta-large-slice", "smollm2")
QUICK_MODELS = ("tiny-bert", "tiny-llama")
N_ADAPTERS = 8


def _prepare(name: str, base: nn.Module) -> nn.Module:
    """A copy of ``base`` ready to train with ``name`` (HUT and LoRA: r = 8 on q and v), or the frozen floor."""
    from ..methods import apply_method, get_method

    model = copy.deepcopy(base)
    if name == "frozen":
        model.requires_grad_(False)
        model.enable_input_require_grads()  # backward runs into the input: the floor every adapter pays
        return model
    method, options = VARIANTS.get(name, (name, {}))
    preset = "paper-glue" if "paper-glue" in get_method(method).presets else None
    return apply_method(method, model, preset=preset, **options)


def saved_tensor_bytes(model: nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for the backward of one training forward (parameters
    excluded: they exist anyway). Views of one storage count once, as they occupy memory once."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = training_loss(model, batch)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(n for ptr, n in storages.items() if ptr not in param_ptrs)


def memory_mib(model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """Training memory of one step, in MiB: counted on CPU, the allocator's peak on CUDA (see the module doc)."""
    params = list(model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    frozen = sum(_weight_bytes(p) for p in params if not p.requires_grad)
    activations = saved_tensor_bytes(model, batch)
    out = {"saved_activations_mib": activations / MIB, "trainable_state_mib": 4 * trainable / MIB,
           "frozen_weights_mib": frozen / MIB, "total_mib": (activations + 4 * trainable + frozen) / MIB,
           "kind": "counted"}
    if device.type == "cuda":
        step = training_step(model, batch)
        step()  # creates AdamW's state, which the peak must include
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        out["total_mib"], out["kind"] = torch.cuda.max_memory_allocated(device) / MIB, "cuda_max_allocated"
    return out


def _weight_bytes(param: torch.Tensor) -> int:
    """Bytes a frozen weight occupies: its storage, plus a bitsandbytes 4-bit weight's quantisation constants
    (one absmax per block and the code book; the nested absmax of double quantisation where used)."""
    total = param.numel() * param.element_size()
    state = getattr(param, "quant_state", None)
    if state is not None:
        for t in (state.absmax, state.code, getattr(getattr(state, "state2", None), "absmax", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


# ------------------------------------------------------------------------------------------------- models
def load_model(name: str, device: torch.device) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    """A bare base model, a batch of token ids and a label: the embedded encoder (``minilm``), the embedded
    decoder (``smollm2``), two RoBERTa-large-shaped layers with random weights, or tiny random models.

    Raises:
        ValueError: Unknown name.
        FileNotFoundError: An embedded model's package is not installed (the message says which).
    """
    from transformers import AutoModel, BertConfig, BertModel, LlamaConfig, LlamaModel

    from ..archs import build_arch
    from ..models import drop_gguf_quantization_marker, resolve_model

    torch.manual_seed(SEED)
    if name == "tiny-bert":
        model = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64))
        shape, label = (2, 16), "tiny BERT (random, 2 layers × 32)"
    elif name == "tiny-llama":
        model = LlamaModel(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=64))
        shape, label = (2, 16), "tiny Llama (random, 2 layers × 32)"
    elif name == "minilm":
        model = AutoModel.from_pretrained(resolve_model("minilm").path)
        shape, label = (16, 128), "all-MiniLM-L6-v2"
    elif name == "smollm2":
        src = resolve_model("smollm2")
        model = drop_gguf_quantization_marker(AutoModel.from_pretrained(src.path, **src.kwargs()))
        shape, label = (4, 64), "SmolLM2-135M"
    elif name == "roberta-large-slice":
        model = build_arch("roberta-large", device="cpu", layers=2)
        shape, label = (4, 128), "RoBERTa-large shape, 2 layers, random weights"
    else:
        known = ", ".join(BENCH_MODELS + QUICK_MODELS)
        raise ValueError(f"Unknown bench model {name!r}; known: {known}.")
    model = model.float().to(device)
    vocab = model.config.vocab_size
    low = min(1000, vocab // 2)  # past the special tokens where the vocabulary allows
    ids = torch.randint(low, vocab, shape, generator=torch.Generator().manual_seed(SEED)).to(device)
    return model, {"input_ids": ids}, f"{label} (batch {shape[0]} × {shape[1]})"


# ----------------------------------------------------------------------------------------------- benches
def _measure_training(base: nn.Module, batch: dict[str, torch.Tensor], label: str, methods: tuple[str, ...],
                      reps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """Step time and memory of each method on copies of ``base``, with ratios to LoRA (and to the floor when
    ``"frozen"`` is among them)."""
    from ..methods import count_parameters

    models = {m: _prepare(m, base) for m in methods}
    del base  # the caller passes no other reference: on CUDA the peak must not include a spare copy
    times = interleaved_medians({m: training_step(model, batch) for m, model in models.items()}, reps, warmup, device)
    memory = {m: memory_mib(model, batch, device) for m, model in models.items()}
    out: dict[str, Any] = {"model": label, "trainable": {m: count_parameters(model)[0] for m, model in models.items()},
                           "step_s": times, "memory": memory}
    refs = ("frozen", "lora") if "frozen" in methods else ("lora",)
    for ref, key in ((r, "floor" if r == "frozen" else "lora") for r in refs):
        out[f"step_ratio_to_{key}"] = {m: times[m] / times[ref] for m in times}
        out[f"memory_ratio_to_{key}"] = {m: memory[m]["total_mib"] / memory[ref]["total_mib"] for m in memory}
    return out


def bench_training(name: str, reps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """Step time and memory of every training variant on one model, and their ratios to the floor and to LoRA."""
    return _measure_training(*load_model(name, device), TRAIN_METHODS, reps, warmup, device)


def _perturb(model: nn.Module, seed: int) -> None:
    """Move every trainable parameter off its init so adapters differ from each other and from the base."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn(p.shape, generator=gen).to(p.device, p.dtype))


def bench_inference(name: str, reps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """Forward latency (eval, no_grad) of the base, HUT unmerged, and HUT merged into the base weights."""
    from ..methods import apply_method, merge_method

    base, batch, label = load_model(name, device)
    base.eval()
    unmerged = apply_method("hut", copy.deepcopy(base), preset="paper-glue", shift=False)
    _perturb(unmerged, SEED + 1)
    unmerged.eval()
    merged = merge_method(copy.deepcopy(unmerged)).eval()
    variants = {"base": base, "hut_unmerged": unmerged, "hut_merged": merged}
    with torch.no_grad():
        reference = variants["hut_unmerged"](**batch).last_hidden_state
        max_diff = (variants["hut_merged"](**batch).last_hidden_state - reference).abs().max().item()
        times = interleaved_medians({k: (lambda m=m: m(**batch)) for k, m in variants.items()}, reps, warmup,
                                     device)
    return {"model": label, "latency_s": times, "ratio_to_base": {k: v / times["base"] for k, v in times.items()},
            "merged_max_abs_difference": max_diff}


def bench_mixed(name: str, reps: int, warmup: int, device: torch.device, n_adapters: int = N_ADAPTERS
                ) -> dict[str, Any]:
    """One batch served with one adapter for every row, against the same batch with a different adapter per
    row (``adapter_names=[...]``, ``n_adapters`` adapters, equal shares): HUT against peft's LoRA."""
    from peft import LoraConfig, get_peft_model

    from hut_peft.hut import HUTConfig

    base, batch, label = load_model(name, device)
    ids = batch["input_ids"]
    rows = ids.shape[0]
    if rows % n_adapters:
        ids = ids.repeat(n_adapters, 1)[: n_adapters * max(1, rows // n_adapters)]
        rows = ids.shape[0]
    names = [f"a{i % n_adapters}" for i in range(rows)]
    configs = {"hut": lambda: HUTConfig(r=8, target_modules=["query", "value"], init="perturbed"),
               "lora": lambda: LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                          init_lora_weights=False)}
    if base.config.model_type == "llama":
        configs = {k: (lambda f=f: _with_targets(f(), ["q_proj", "v_proj"])) for k, f in configs.items()}
    result: dict[str, Any] = {"model": label, "rows": rows, "adapters": n_adapters}
    for method, make in configs.items():
        torch.manual_seed(SEED)
        model = get_peft_model(copy.deepcopy(base), make(), adapter_name="a0")
        for i in range(1, n_adapters):
            model.add_adapter(f"a{i}", make())
        model.eval()
        fns = {"single": lambda m=model: m(input_ids=ids),
               "mixed": lambda m=model: m(input_ids=ids, adapter_names=names)}
        with torch.no_grad():
            times = interleaved_medians(fns, reps, warmup, device)
        result[method] = {"latency_s": times, "mixed_over_single": times["mixed"] / times["single"]}
    return result


def bench_compile(name: str, reps: int, warmup: int, device: torch.device, backend: str = "inductor"
                  ) -> dict[str, Any]:
    """Training-step time of HUT and LoRA, eager and under ``torch.compile``, side by side; the time of the first
    compiled training step (tracing and code generation), the graph breaks that ``torch._dynamo.explain`` finds in
    one training forward, and the loss (eval mode), compiled against eager. ``backend``: ``inductor`` (the
    default) generates code; ``aot_eager`` only traces, for quick runs."""
    base, batch, label = load_model(name, device)
    result: dict[str, Any] = {"model": label, "backend": backend, "first_compiled_step_s": {}, "graph_breaks": {},
                              "loss_abs_difference": {}}
    pairs = {m: (_prepare(m, base), None) for m in COMPILE_METHODS}
    for method, (eager, _) in pairs.items():
        compiled_model = copy.deepcopy(eager).train()
        explained = torch._dynamo.explain(lambda m=compiled_model: training_loss(m, batch))()
        result["graph_breaks"][method] = explained.graph_break_count
        pairs[method] = (eager, compiled_model)
    torch._dynamo.reset()  # explain's traces are not the compiled models' code
    fns: dict[str, Callable[[], None]] = {}
    for method, (eager, compiled_model) in pairs.items():
        compiled = torch.compile(compiled_model, backend=backend)
        eager.eval()
        compiled_model.eval()
        with torch.no_grad():  # eval mode, no dropout: the two losses must agree to rounding
            losses = [training_loss(eager, batch).item(), training_loss(compiled, batch).item()]
        result["loss_abs_difference"][method] = abs(losses[0] - losses[1])
        fns[f"{method}_eager"] = training_step(eager, batch)  # (sets train mode)
        fns[f"{method}_compiled"] = training_step(compiled_model, batch, forward=compiled)
        start = time.perf_counter()
        fns[f"{method}_compiled"]()  # the first training step compiles the training graph, forward and backward
        sync(device)
        result["first_compiled_step_s"][method] = time.perf_counter() - start
    times = interleaved_medians(fns, reps, warmup, device)
    result["step_s"] = times
    result["compiled_over_eager"] = {m: times[f"{m}_compiled"] / times[f"{m}_eager"] for m in COMPILE_METHODS}
    result["ratio_to_lora"] = {k: v / times["lora_" + k.split("_", 1)[1]] for k, v in times.items()}
    return result


def load_model_quantized(name: str, device: torch.device, bits: int = 4
                         ) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    """:func:`load_model`'s model with its linear layers in bitsandbytes 4-bit NF4 (compute in fp32) or 8-bit,
    loaded the way QLoRA users load one: saved, then ``from_pretrained(..., quantization_config=...)``.
    (transformers cannot quantise a model it reads from GGUF, the form SmolLM2 ships in, so it goes through a
    temporary folder.)

    Raises:
        ValueError: ``bits`` is not 4 or 8.
        ImportError: bitsandbytes is not installed.
    """
    import importlib.util
    import tempfile

    from transformers import AutoModel, BitsAndBytesConfig

    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits!r}.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError("Quantised bases need bitsandbytes: pip install bitsandbytes (in the dev extras).")
    model, batch, label = load_model(name, torch.device("cpu"))
    quant = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
             if bits == 4 else BitsAndBytesConfig(load_in_8bit=True))
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        del model
        kwargs = {"device_map": {"": device.index or 0}} if device.type == "cuda" else {}
        model = AutoModel.from_pretrained(folder, quantization_config=quant, dtype=torch.float32, **kwargs)
    name_part, shape_part = label.split(" (", 1)
    kind = "4-bit NF4" if bits == 4 else "8-bit"
    return model, {k: v.to(device) for k, v in batch.items()}, f"{name_part} in {kind} ({shape_part}"


def bench_qlora(name: str, reps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    """QLoRA-style training: HUT, HUT with ``recompute_base_output`` and LoRA (r = 8 on q and v) on one 4-bit
    base, step time and memory, as :func:`bench_training` measures them; a ``skipped`` reason without
    bitsandbytes."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return {"model": name, "skipped": "bitsandbytes is not installed (pip install bitsandbytes)"}
    return _measure_training(*load_model_quantized(name, device, bits=4), QLORA_METHODS, reps, warmup, device)


def _with_targets(config: Any, targets: list[str]) -> Any:
    config.target_modules = set(targets)
    return config


def hardware(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, threads, library versions, GPU if any."""
    import peft
    import transformers

    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                            "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "peft": peft.__version__,
                            "python": platform.python_version(), "device": str(device), "gpu": None}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ------------------------------------------------------------------------------------------------- report
def to_markdown(result: dict[str, Any]) -> str:
    """The result as markdown tables (one per measurement)."""
    from .llm import to_markdown as llm_markdown
    from .serving import to_markdown as serving_markdown

    hw = result["hardware"]
    lines = [f"Hardware: {hw.get('cpu_model', hw['cpu'])} ({hw['cores']} cores), {hw['threads']} torch threads, "
             f"device {hw['device']}{' (' + hw['gpu'] + ')' if hw.get('gpu') else ''}; torch {hw['torch']}, "
             f"transformers {hw['transformers']}, peft {hw['peft']}. Medians of {result['reps']} interleaved "
             f"repetitions after {result['warmup']} warm-up rounds, seed {result['seed']}. 1-minute load average "
             f"at start and end: {_fmt_load(hw.get('loadavg_1min_start_end'))} (other processes share the cores).",
             ""]
    for t in result["training"]:
        lines += [f"**Training step, {t['model']}**", "",
                  "| method | trainable | step (s) | × floor | × LoRA | saved activations (MiB) | "
                  "trainable state (MiB) | total memory (MiB) | memory × floor | memory × LoRA |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for m in TRAIN_METHODS:
            mem = t["memory"][m]
            lines.append(
                f"| {m} | {t['trainable'][m]:,} | {t['step_s'][m]:.4f} | {t['step_ratio_to_floor'][m]:.3f} | "
                f"{t['step_ratio_to_lora'][m]:.3f} | {mem['saved_activations_mib']:.1f} | "
                f"{mem['trainable_state_mib']:.1f} | {mem['total_mib']:.1f} | {t['memory_ratio_to_floor'][m]:.3f} | "
                f"{t['memory_ratio_to_lora'][m]:.3f} |")
        lines.append("")
    inf = result["inference"]
    if inf:
        lines += [f"**Inference latency (eval, no_grad), {inf['model']}**", "", "| model | latency (s) | × base |",
                  "|---|---|---|"]
        lines += [f"| {k} | {v:.4f} | {inf['ratio_to_base'][k]:.3f} |" for k, v in inf["latency_s"].items()]
        lines += ["", f"Merged vs unmerged outputs: max |Δ| = {inf['merged_max_abs_difference']:.2e}.", ""]
    mix = result["mixed"]
    if mix:
        lines += [f"**Mixed-adapter batch, {mix['model']}: {mix['rows']} rows, {mix['adapters']} adapters "
                  f"({mix['rows'] // mix['adapters']} rows each)**", "",
                  "| method | one adapter for all rows (s) | a different adapter per row (s) | mixed / single |",
                  "|---|---|---|---|"]
        for m in ("hut", "lora"):
            lines.append(f"| {m} | {mix[m]['latency_s']['single']:.4f} | {mix[m]['latency_s']['mixed']:.4f} | "
                         f"{mix[m]['mixed_over_single']:.3f} |")
        lines.append("")
    if result.get("compile"):
        lines += _compile_markdown(result["compile"]) + [""]
    if result.get("qlora"):
        lines += _qlora_markdown(result["qlora"]) + [""]
    lines += serving_markdown(result.get("serving"), result.get("bulk_load"))
    lines += llm_markdown(result.get("llm"))
    return "\n".join(lines) + "\n"


def _compile_markdown(comp: dict[str, Any]) -> list[str]:
    lines = ["", f"**torch.compile ({comp['backend']}), training step, {comp['model']}**", "",
             "| method | eager step (s) | compiled step (s) | compiled / eager | first compiled step (s) | "
             "graph breaks | loss difference, compiled vs eager |",
             "|---|---|---|---|---|---|---|"]
    for m in COMPILE_METHODS:
        lines.append(f"| {m} | {comp['step_s'][m + '_eager']:.4f} | {comp['step_s'][m + '_compiled']:.4f} | "
                     f"{comp['compiled_over_eager'][m]:.3f} | {comp['first_compiled_step_s'][m]:.1f} | "
                     f"{comp['graph_breaks'][m]} | {comp['loss_abs_difference'][m]:.1e} |")
    return lines


def _qlora_markdown(q: dict[str, Any]) -> list[str]:
    if q.get("skipped"):
        return ["", f"QLoRA-style training step on {q['model']}: not run, {q['skipped']}."]
    lines = ["", f"**QLoRA-style training step, {q['model']}**", "",
             "| method | trainable | step (s) | × LoRA | saved activations (MiB) | frozen weights (MiB) | "
             "total memory (MiB) | memory × LoRA |",
             "|---|---|---|---|---|---|---|---|"]
    for m in QLORA_METHODS:
        mem = q["memory"][m]
        lines.append(f"| {m} | {q['trainable'][m]:,} | {q['step_s'][m]:.4f} | {q['step_ratio_to_lora'][m]:.3f} | "
                     f"{mem['saved_activations_mib']:.1f} | {mem['frozen_weights_mib']:.1f} | {mem['total_mib']:.1f} | "
                     f"{q['memory_ratio_to_lora'][m]:.3f} |")
    return lines


def run_bench(models: Optional[list[str]] = None, reps: int = 5, warmup: int = 2, quick: bool = False,
              device: str | torch.device = "cpu", sections: tuple[str, ...] = SECTIONS,
              serving_sizes: Optional[tuple[int, ...]] = None, serving_model: str = "smollm2",
              bulk_adapters: Optional[int] = None, llm: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Every measurement in ``sections`` in one run. ``quick``: tiny random models, one repetition, K ∈ {1, 4}
    and 4 bulk-loaded adapters, a toy-width LLM (for tests). ``llm``: llm.bench_llm's shape options.

    Raises:
        ValueError: Unknown model name or section, or ``reps`` < 1.
    """
    from .llm import bench_llm
    from .serving import BULK_ADAPTERS, QUICK_SIZES, SERVING_SIZES, bench_bulk_load, bench_serving

    if reps < 1 or warmup < 0:
        raise ValueError(f"--reps must be >= 1 and warm-up >= 0, got reps={reps}, warmup={warmup}.")
    unknown = sorted(set(sections) - set(ALL_SECTIONS))
    if unknown:
        raise ValueError(f"Unknown bench section {unknown[0]!r}; known: {', '.join(ALL_SECTIONS)}.")
    dev = torch.device(device)
    torch.manual_seed(SEED)
    if quick:
        models, reps, warmup = list(QUICK_MODELS), 1, 1
    models = list(models or BENCH_MODELS)
    for name in models:
        if name not in BENCH_MODELS + QUICK_MODELS:
            raise ValueError(f"Unknown bench model {name!r}; known: {', '.join(BENCH_MODELS + QUICK_MODELS)}.")
    encoder = "tiny-bert" if quick else "minilm"
    latency_reps = reps if quick else 3 * reps  # forward-only calls are short: more of them for a stable median
    start = time.perf_counter()
    load_start = _loadavg()
    sizes = QUICK_SIZES if quick else tuple(serving_sizes or SERVING_SIZES)
    result: dict[str, Any] = {
        "hardware": hardware(dev), "seed": SEED, "reps": reps, "warmup": warmup, "quick": quick,
        "sections": list(sections),
        "training": [bench_training(m, reps, warmup, dev) for m in models] if "training" in sections else [],
        "inference": bench_inference(encoder, latency_reps, warmup, dev) if "inference" in sections else None,
        "mixed": bench_mixed(encoder, latency_reps, warmup, dev) if "mixed" in sections else None,
        # inductor's code generation takes minutes on a small CPU: quick runs only trace (aot_eager)
        "compile": bench_compile(encoder, reps, warmup, dev, backend="aot_eager" if quick else "inductor")
        if "compile" in sections else None,
        "qlora": bench_qlora("tiny-llama" if quick else "smollm2", reps, warmup, dev) if "qlora" in sections else None,
        # the first mixed call builds HUT's bank: at least one warm-up round keeps it out of the timings
        "serving": bench_serving("tiny-llama" if quick else serving_model, sizes, reps, max(1, warmup), dev,
                                 group_size=8 if quick else 64) if "serving" in sections else None,
        "bulk_load": bench_bulk_load(4 if quick else bulk_adapters or BULK_ADAPTERS, dev, quick=quick)
        if "serving" in sections else None,
        "llm": bench_llm(**{**({"layers": 2, "batch": 2, "seq": 16} if quick else {}), **(llm or {})}, reps=reps,
                         warmup=warmup, device=dev, quick=quick) if "llm" in sections else None,
    }
    result["wall_s"] = time.perf_counter() - start
    # Other processes on the machine slow every variant alike (interleaving) but widen the noise: record them.
    result["hardware"]["loadavg_1min_start_end"] = [load_start, _loadavg()]
    return result


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _fmt_load(pair: Optional[list[Optional[float]]]) -> str:
    return " → ".join("n/a" if v is None else f"{v:.2f}" for v in (pair or [None, None]))


def _loadavg() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="Tiny random models and one repetition (for tests).")
    parser.add_argument("--models", default=",".join(BENCH_MODELS),
                        help=f"Training-step models, comma-separated: {', '.join(BENCH_MODELS + QUICK_MODELS)}.")
    parser.add_argument("--reps", type=int, default=5, help="Timed repetitions per variant, interleaved (default 5).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed warm-up rounds (default 2).")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when available).")
    parser.add_argument("--output", help="Also write the results as JSON here (atomically).")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"What to measure, comma-separated: {', '.join(ALL_SECTIONS)} (default: all but llm).")
    parser.add_argument("--llm-arch", default="llama-3-8b", help="llm section: a published shape (archs.py).")
    parser.add_argument("--llm-layers", type=int, default=8, help="llm section: blocks of that shape (default 8).")
    parser.add_argument("--llm-batch", type=int, default=4, help="llm section: sequences per step (default 4).")
    parser.add_argument("--llm-seq", type=int, default=1024, help="llm section: tokens per sequence (default 1024).")
    parser.add_argument("--serving-sizes", default="1,8,64,256,1024",
                        help="Serving table: numbers K of distinct adapters, one per row (default 1,8,64,256,1024).")
    parser.add_argument("--serving-model", default="smollm2", help="Serving table's decoder: smollm2 or tiny-llama.")
    parser.add_argument("--bulk-adapters", type=int, default=1000,
                        help="Saved MiniLM adapters to bulk-load in the serving section (default 1000).")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft bench`."""
    import warnings

    from ..atomic import write_json_atomic

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}.")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings():  # peft probes a deprecated transformers attribute on every wrap
            warnings.filterwarnings("ignore", category=FutureWarning)
            result = run_bench([m.strip() for m in args.models.split(",") if m.strip()], args.reps, args.warmup,
                               args.quick, args.device, sections=_csv(args.sections),
                               serving_sizes=tuple(int(k) for k in _csv(args.serving_sizes)),
                               serving_model=args.serving_model, bulk_adapters=args.bulk_adapters,
                               llm=None if args.quick else {"arch": args.llm_arch, "layers": args.llm_layers,
                                                            "batch": args.llm_batch, "seq": args.llm_seq})
    finally:
        torch.set_num_threads(previous_threads)  # in-process callers (tests) keep their setting
    print(to_markdown(result))
    if args.output:
        write_json_atomic(Path(args.output), result)
    return 0
