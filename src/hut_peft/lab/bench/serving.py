"""The serving part of `hut-peft bench`: K adapters, a different one on every row of one batch, against the same
batch on one adapter; HUT beside peft's LoRA and RoAd, on the embedded decoder (docs/serving.md).

Method:

- K ∈ ``sizes``; the batch has K rows (row i uses adapter i) of ``PROMPT_TOKENS`` token ids. "single" runs the
  same batch with the first adapter active and no ``adapter_names``; "mixed" passes one name per row.
- A forward (``logits_to_keep=1``, as a prefill) and a greedy ``generate`` of ``NEW_TOKENS`` tokens, under
  ``no_grad``; medians of interleaved repetitions (every method and mode once per round), ratios from one run.
- "disabled": the same forward inside ``with model.disable_adapter():`` (peft's way to reach the base model, as a
  DPO reference pass does), the context's entry and exit counted; its ratio to "single" is what disabling costs
  with K adapters loaded.
- HUT's adapters are real saved adapters (perturbed, one ``save_pretrained`` each), loaded with
  ``load_adapters``; the table gives the time to have K loaded. LoRA's and RoAd's K adapters are copies of a
  random one with fresh noise (peft's ``load_adapter`` costs more per adapter as adapters accumulate: loading
  1,024 would take over an hour here), so their forward cost is measured on the same K; beside it, the time of
  one more peft ``load_adapter`` with K loaded shows that growth for HUT and LoRA.
- Memory: the adapters' parameters, and HUT's stacked bank (bank.py), in MiB.
- ``bench_bulk_load``: N saved adapters of the embedded encoder loaded at once (the issue's target: 1,000 MiniLM
  adapters in under 20 s), and one more through peft's ``load_adapter`` for comparison.
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .timing import MIB, SEED, interleaved_medians

SERVING_SIZES = (1, 8, 64, 256, 1024)
QUICK_SIZES = (1, 4)
PROMPT_TOKENS = 4
NEW_TOKENS = 4
BULK_ADAPTERS = 1000
NOISE = 0.02  # perturbation of every adapter, so that they differ from each other and from the base


# ------------------------------------------------------------------------------------------------ models
def load_decoder(name: str, device: torch.device) -> tuple[nn.Module, str]:
    """The embedded decoder (``smollm2``) or a tiny random Llama (``tiny-llama``), with its LM head."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from ..models import drop_gguf_quantization_marker, resolve_model

    torch.manual_seed(SEED)
    if name == "tiny-llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, intermediate_size=64))
        label = "tiny Llama (random, 2 layers × 32)"
    elif name == "smollm2":
        src = resolve_model("smollm2")
        model = drop_gguf_quantization_marker(AutoModelForCausalLM.from_pretrained(src.path, **src.kwargs()))
        label = "SmolLM2-135M"
    else:
        raise ValueError(f"Unknown serving model {name!r}; known: smollm2, tiny-llama.")
    return model.float().to(device).eval(), label


def _configs(group_size: int) -> dict[str, Callable[[], Any]]:
    """HUT and LoRA at r = 8 on q and v (the paper's setting), and RoAd where the installed peft has it."""
    import peft

    from hut_peft.hut import HUTConfig

    targets = ["q_proj", "v_proj"]
    configs: dict[str, Callable[[], Any]] = {
        "hut": lambda: HUTConfig(r=8, target_modules=targets),
        "lora": lambda: peft.LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False),
    }
    if hasattr(peft, "RoadConfig"):
        configs["road"] = lambda: peft.RoadConfig(variant="road_1", group_size=group_size, target_modules=targets)
    return configs


def _adapter_params(model: nn.Module, name: str) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if n.endswith(f".{name}") or f".{name}." in n]


def _perturb_(params: list[torch.Tensor], gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in params:
            p.add_(NOISE * torch.randn(p.shape, generator=gen).to(p.device, p.dtype))


def save_tenants(base: nn.Module, config: Any, folder: Path, n: int, prefix: str = "t") -> list[str]:
    """``n`` different saved adapters (one model, perturbed from its init and saved ``n`` times: linear time)."""
    from peft import get_peft_model

    model = get_peft_model(copy.deepcopy(base), config)
    params = _adapter_params(model, "default")
    init = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(SEED)
    names = [f"{prefix}{i:04d}" for i in range(n)]
    for name in names:
        with torch.no_grad():
            for p, p0 in zip(params, init):
                p.copy_(p0)
        _perturb_(params, gen)
        model.save_pretrained(folder / name)
    return names


def clone_adapter(model: nn.Module, source: str, name: str, gen: torch.Generator) -> None:
    """Add adapter ``name`` as a perturbed copy of ``source`` on every peft tuner layer, in time independent of the
    number loaded: every per-adapter store of a layer (module, parameter and plain dicts keyed by adapter name)
    gets a deep copy of the source's entry. For measuring forward cost with K adapters, not a loading method."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    model.peft_config[name] = copy.deepcopy(model.peft_config[source])
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for store in list(vars(module).values()) + list(module._modules.values()):
            if isinstance(store, (dict, nn.ModuleDict, nn.ParameterDict)) and source in store:
                entry = copy.deepcopy(store[source])
                if isinstance(entry, (nn.Module, torch.Tensor)):
                    tensors = list(entry.parameters()) if isinstance(entry, nn.Module) else [entry]
                    _perturb_(tensors, gen)
                    for t in tensors:
                        t.requires_grad_(False)
                store[name] = entry


# ------------------------------------------------------------------------------------------------ timing
def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peft_load_one_more(model: Any, path: Path) -> float:
    """Seconds of one peft ``load_adapter`` with the current adapters loaded (the extra one is deleted after)."""
    seconds = _timed(lambda: model.load_adapter(str(path), adapter_name="one_more"))
    model.delete_adapter("one_more")
    return seconds


def _disabled_forward(model: Any, batch: torch.Tensor) -> Any:
    """The base model's forward as peft users ask for it, with K adapters loaded: ``with model.disable_adapter()``
    (entering and leaving the context counted: that is what a reference-model pass in DPO pays each step)."""
    with model.disable_adapter():
        return model(input_ids=batch, logits_to_keep=1)


def bench_serving(model_name: str, sizes: tuple[int, ...], reps: int, warmup: int, device: torch.device,
                  group_size: int = 64) -> dict[str, Any]:
    """Forward and greedy-generate time, single adapter vs one adapter per row, for K ∈ ``sizes``; load times;
    memory. See the module docstring."""
    from peft import PeftModel, get_peft_model

    from hut_peft.hut import load_adapters
    from hut_peft.hut.bank import model_bank_nbytes

    base, label = load_decoder(model_name, device)
    configs = _configs(group_size)
    vocab = base.config.vocab_size
    low = min(1000, vocab // 2)
    kmax = max(sizes)
    gen = torch.Generator().manual_seed(SEED)
    ids = torch.randint(low, vocab, (kmax, PROMPT_TOKENS), generator=gen).to(device)
    pad = base.config.pad_token_id if base.config.pad_token_id is not None else base.config.eos_token_id
    result: dict[str, Any] = {"model": label, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS,
                              "methods": list(configs), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tenants = save_tenants(base, configs["hut"](), folder / "hut", kmax + 1)
        save_tenants(base, configs["lora"](), folder / "lora", 1)
        extra_hut, extra_lora = folder / "hut" / tenants[-1], folder / "lora" / "t0000"
        models: dict[str, Any] = {}
        names: dict[str, list[str]] = {}
        loaded_s = 0.0
        for k in sizes:
            row: dict[str, Any] = {"k": k}
            # HUT: real saved adapters, loaded in bulk (cumulative time to have k loaded)
            have = len(names.get("hut", []))
            if "hut" not in models:
                loaded_s += _timed(lambda: models.__setitem__(
                    "hut", PeftModel.from_pretrained(copy.deepcopy(base), folder / "hut" / tenants[0],
                                                     adapter_name=tenants[0]).eval()))
                have = 1
            if k > have:
                more = {t: folder / "hut" / t for t in tenants[have:k]}
                loaded_s += _timed(lambda more=more: load_adapters(models["hut"], more))
            names["hut"] = tenants[:k]
            row["hut_load_s"] = loaded_s
            # LoRA, RoAd: copies of one random adapter, each with fresh noise
            for method in configs:
                if method == "hut":
                    continue
                if method not in models:
                    torch.manual_seed(SEED)
                    models[method] = get_peft_model(copy.deepcopy(base), configs[method](), adapter_name="c0000")
                    _perturb_(_adapter_params(models[method], "c0000"), gen)
                    models[method].eval()
                    names[method] = ["c0000"]
                for i in range(len(names[method]), k):
                    clone_adapter(models[method], "c0000", f"c{i:04d}", gen)
                    names[method].append(f"c{i:04d}")
            row["peft_load_one_more_s"] = {"hut": _peft_load_one_more(models["hut"], extra_hut),
                                          "lora": _peft_load_one_more(models["lora"], extra_lora)}
            batch = ids[:k]
            forward, generate = {}, {}
            for method, model in models.items():
                model.base_model.set_adapter(names[method][0])
                rows = names[method][:k]
                forward[f"{method}/single"] = lambda m=model, b=batch: m(input_ids=b, logits_to_keep=1)
                forward[f"{method}/mixed"] = lambda m=model, b=batch, r=rows: m(input_ids=b, adapter_names=r,
                                                                                logits_to_keep=1)
                forward[f"{method}/disabled"] = partial(_disabled_forward, model, batch)
                kw = dict(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=NEW_TOKENS,
                          min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=pad)
                generate[f"{method}/single"] = lambda m=model, kw=kw: m.generate(**kw)
                generate[f"{method}/mixed"] = lambda m=model, kw=kw, r=rows: m.generate(adapter_names=r, **kw)
            with torch.no_grad():
                row["forward_s"] = interleaved_medians(forward, reps, warmup, device)
                row["generate_s"] = interleaved_medians(generate, reps, warmup, device)
            for key in ("forward", "generate"):
                times = row[f"{key}_s"]
                row[f"{key}_ratio"] = {m: times[f"{m}/mixed"] / times[f"{m}/single"] for m in models}
            row["disabled_ratio"] = {m: row["forward_s"][f"{m}/disabled"] / row["forward_s"][f"{m}/single"]
                                     for m in models}
            prefix = {"hut": "hut_", "lora": "lora_", "road": "road_"}
            row["memory_mib"] = {m: sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                                        if prefix[m] in n) / MIB for m, model in models.items()}
            row["memory_mib"]["hut_bank"] = model_bank_nbytes(models["hut"]) / MIB
            result["rows"].append(row)
            print(f"serving: K = {k} done ({time.strftime('%H:%M:%S')}): forward mixed/single "
                  + ", ".join(f"{m} {row['forward_ratio'][m]:.3f}" for m in models), file=sys.stderr, flush=True)
    return result


def bench_bulk_load(n: int, device: torch.device, quick: bool = False) -> dict[str, Any]:
    """``n`` saved adapters of the embedded encoder (HUT, r = 8, query and value) loaded with ``load_adapters``;
    then one more with peft's ``load_adapter``, for the per-adapter cost that bulk loading avoids."""
    from peft import PeftModel
    from transformers import AutoModel, BertConfig, BertModel

    from hut_peft.hut import HUTConfig, load_adapters

    from ..models import resolve_model

    torch.manual_seed(SEED)
    if quick:
        base = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=64))
        label = "tiny BERT (random, 2 layers × 32)"
    else:
        base, label = AutoModel.from_pretrained(resolve_model("minilm").path), "all-MiniLM-L6-v2"
    base = base.to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tenants = save_tenants(base, HUTConfig(r=8, target_modules=["query", "value"]), folder, n + 1)
        start = time.perf_counter()
        model = PeftModel.from_pretrained(copy.deepcopy(base), folder / tenants[0], adapter_name=tenants[0])
        load_adapters(model, {t: folder / t for t in tenants[1:n]})
        seconds = time.perf_counter() - start
        one_more = _peft_load_one_more(model, folder / tenants[n])
    return {"model": label, "adapters": n, "load_s": seconds, "per_adapter_ms": 1000 * seconds / n,
            "peft_load_one_more_s": one_more}


def to_markdown(serving: Optional[dict[str, Any]], bulk: Optional[dict[str, Any]]) -> list[str]:
    """The serving table (ratios, load times, memory) and the bulk-load line, as markdown lines."""
    lines: list[str] = []
    if serving:
        methods = serving["methods"]
        names = {"hut": "HUT", "lora": "LoRA", "road": "RoAd"}
        lines += [f"**Serving K adapters, one per row, {serving['model']}: K rows × {serving['prompt_tokens']} "
                  f"tokens; forward (prefill) and greedy generate of {serving['new_tokens']} tokens; mixed / single "
                  "adapter**", "",
                  "| K | " + " | ".join(f"forward {names[m]}" for m in methods) + " | "
                  + " | ".join(f"generate {names[m]}" for m in methods) + " | "
                  + " | ".join(f"disable_adapter() forward {names[m]}" for m in methods)
                  + " | HUT single forward (s) | HUT single generate (s) |",
                  "|---" * (3 * len(methods) + 3) + "|"]
        for row in serving["rows"]:
            disabled = row.get("disabled_ratio", {})  # older result files have no disabled pass
            lines.append(f"| {row['k']} | " + " | ".join(f"{row['forward_ratio'][m]:.3f}" for m in methods) + " | "
                         + " | ".join(f"{row['generate_ratio'][m]:.3f}" for m in methods) + " | "
                         + " | ".join(f"{disabled[m]:.3f}" if m in disabled else "–" for m in methods)
                         + f" | {row['forward_s']['hut/single']:.3f} | {row['generate_s']['hut/single']:.3f} |")
        lines += ["", "| K | HUT: load K (s, bulk) | peft load_adapter, one more: HUT (s) | LoRA (s) | "
                      "HUT adapters (MiB) | HUT bank (MiB) | " + " | ".join(f"{names[m]} adapters (MiB)"
                                                                          for m in methods if m != "hut") + " |",
                  "|---" * (6 + len(methods) - 1) + "|"]
        for row in serving["rows"]:
            mem = row["memory_mib"]
            lines.append(f"| {row['k']} | {row['hut_load_s']:.2f} | {row['peft_load_one_more_s']['hut']:.3f} | "
                         f"{row['peft_load_one_more_s']['lora']:.3f} | {mem['hut']:.2f} | {mem['hut_bank']:.2f} | "
                         + " | ".join(f"{mem[m]:.2f}" for m in methods if m != "hut") + " |")
        lines.append("")
    if bulk:
        lines += [f"**Bulk load, {bulk['model']}**: {bulk['adapters']} saved HUT adapters (r = 8, query and value) "
                  f"in {bulk['load_s']:.2f} s ({bulk['per_adapter_ms']:.1f} ms each); one more through peft's "
                  f"load_adapter with them loaded: {bulk['peft_load_one_more_s']:.2f} s.", ""]
    return lines
