"""Many tenants, one run (issue 28): what a joint step and a joint run cost, against one adapter and against
separate runs.

Sections (``--sections``, all by default):

- ``step``: one training step (forward, backward, optimiser) of 64 rows × 32 tokens, fp32. ``single``: a peft model
  with one HUT adapter, torch AdamW. ``joint``: K adapters loaded (``add_adapters`` + ``TenantBank``), the 64 rows
  spread over min(K, 64) tenants, each tenant's mean loss, ``TenantAdamW``. Interleaved medians, the ratio from the
  same run. Also the time to create the K adapters and bind them into a bank, and the adapters' training state.
- ``lora``: LoRA cannot train a mixed batch in peft (``adapter_names`` is refused in training), so its way is a
  loop over the tenants of the batch (``set_adapter``, forward and backward on that tenant's rows), then AdamW:
  its step with 64 tenants against its step with one adapter.
- ``e2e``: wall time and peak memory to fine-tune K tenants × N rows end to end with the command line (model load
  included): one joint run, ``--separate`` (one process, one run after another), and one process per tenant.

The loss of ``step`` and ``lora`` is the mean square of the first half of the last hidden features (bench's
``training_loss``), per tenant in the joint step. One thread (``torch.set_num_threads(1)``).

    python benchmarks/tenants.py --out docs/results/tenants.json            # everything (about 40 min here)
    python benchmarks/tenants.py --sections step --models tiny --ks 1 64     # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROWS, TOKENS = 64, 32
TARGETS = {"qv": ["q_proj", "v_proj"],
           "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int) -> dict[str, float]:
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


def base_model(name: str) -> tuple[torch.nn.Module, str]:
    from transformers import AutoModel, LlamaConfig, LlamaModel

    from hut_peft.lab.models import drop_gguf_quantization_marker, resolve_model

    torch.manual_seed(0)
    if name == "tiny":
        config = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=4)
        return LlamaModel(config), "tiny random Llama (hidden 256, MLP 688, 4 layers)"
    src = resolve_model("smollm2")
    model = drop_gguf_quantization_marker(AutoModel.from_pretrained(src.path, **src.kwargs())).float()
    return model, "SmolLM2-135M (30 layers, hidden 576)"


def half_square(hidden: torch.Tensor) -> torch.Tensor:
    """(B,) each row's sum of squares of the first half of the features (bench's training_loss, per row)."""
    return hidden[..., : hidden.shape[-1] // 2].float().pow(2).sum(dim=(1, 2))


def single_step(model: torch.nn.Module, ids: torch.Tensor) -> Callable[[], None]:
    """One adapter, torch AdamW: forward, the mean of the rows' losses, backward, step."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    half = model.config.hidden_size // 2

    def step() -> None:
        half_square(model(input_ids=ids).last_hidden_state).sum().div(ids.numel() * half).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def joint_step(model: torch.nn.Module, names: list[str], tenants: list[str], ids: torch.Tensor) -> Callable[[], None]:
    """K adapters in a bank, TenantAdamW: forward, each tenant's mean loss summed, backward, step."""
    from hut_peft.hut.tenants import TenantAdamW, TenantBank, tenant_mean_loss

    bank = TenantBank(model, names)
    opt = TenantAdamW(bank, lr=1e-5, schedule="constant", weight_decay=0.01)
    model.train()
    count = torch.full((ids.shape[0],), float(ids.shape[1] * (model.config.hidden_size // 2)))

    def step() -> None:
        with bank.step(model, tenants) as joint:
            loss, _ = tenant_mean_loss(half_square(model(input_ids=ids).last_hidden_state), count, joint)
            loss.backward()
        opt.step(joint)

    step.bank = bank  # type: ignore[attr-defined]
    return step


def step_section(models: list[str], ks: list[int], reps: int, warmup: int,
                 all_ks: list[int] | None = None) -> list[dict[str, Any]]:
    from peft import get_peft_model

    from hut_peft import HUTConfig, add_adapters

    out = []
    for model_name in models:
        base, label = base_model(model_name)
        vocab = base.config.vocab_size
        ids = torch.randint(min(1000, vocab // 2), vocab, (ROWS, TOKENS), generator=torch.Generator().manual_seed(0))
        for target, modules in TARGETS.items():
            config = HUTConfig(r=1, target_modules=modules)
            single = single_step(get_peft_model(copy.deepcopy(base), copy.deepcopy(config)), ids)
            for k in ks if target == "qv" or all_ks is None else all_ks:
                names = [f"t{i}" for i in range(k)]
                model = get_peft_model(copy.deepcopy(base), copy.deepcopy(config), adapter_name=names[0])
                start = time.perf_counter()
                add_adapters(model, names[1:], config)
                create_s = time.perf_counter() - start
                stride = max(1, k // min(k, ROWS))
                tenants = [names[(i % min(k, ROWS)) * stride] for i in range(ROWS)]
                start = time.perf_counter()
                joint = joint_step(model, names, tenants, ids)
                bank_s = time.perf_counter() - start
                times = interleaved({"single": single, "joint": joint}, reps, warmup)
                width = joint.bank.width  # type: ignore[attr-defined]
                row = {"model": label, "targets": target, "adapters": k, "distinct_in_batch": len(set(tenants)),
                       "single_ms": 1000 * times["single"], "joint_ms": 1000 * times["joint"],
                       "ratio": times["joint"] / times["single"], "add_adapters_s": create_s, "bank_and_optimizer_s": bank_s,
                       "params_per_adapter": width,
                       # parameters and AdamW's two moments (K rows each), against one adapter's parameters,
                       # gradients and moments
                       "training_state_mib": {"joint": 3 * k * width * 4 / 2**20, "single": 4 * width * 4 / 2**20}}
                print(json.dumps(row), flush=True)
                out.append(row)
    return out


def lora_section(reps: int, warmup: int, k: int = 64) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model

    base, label = base_model("tiny")
    ids = torch.randint(500, 1000, (ROWS, TOKENS), generator=torch.Generator().manual_seed(0))
    config = LoraConfig(r=8, target_modules=TARGETS["qv"])
    single = single_step(get_peft_model(copy.deepcopy(base), copy.deepcopy(config)), ids)
    half = base.config.hidden_size // 2

    names = [f"t{i}" for i in range(k)]
    many = get_peft_model(copy.deepcopy(base), copy.deepcopy(config), adapter_name=names[0])
    for name in names[1:]:
        many.add_adapter(name, copy.deepcopy(config))
    many.base_model.set_adapter(names, inference_mode=False)  # every adapter trainable: one AdamW over all of them
    opt = torch.optim.AdamW([p for p in many.parameters() if p.requires_grad], lr=1e-5)
    many.train()
    rows_of = {name: [i for i in range(ROWS) if i % k == j] for j, name in enumerate(names)}
    refused = None
    try:
        many(input_ids=ids, adapter_names=[names[i % k] for i in range(ROWS)])
    except ValueError as err:
        refused = str(err)

    def loop_step() -> None:
        for name, rows in rows_of.items():
            many.base_model.set_adapter(name)
            loss = half_square(many(input_ids=ids[rows]).last_hidden_state).sum().div(len(rows) * TOKENS * half)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = interleaved({"single": single, "per_tenant_loop": loop_step}, reps, warmup)
    row = {"model": label, "method": "LoRA r=8 on q,v", "adapters": k, "distinct_in_batch": k,
           "single_ms": 1000 * times["single"], "per_tenant_loop_ms": 1000 * times["per_tenant_loop"],
           "ratio": times["per_tenant_loop"] / times["single"], "peft_refuses_mixed_training": refused}
    print(json.dumps(row), flush=True)
    return row


def write_tenant_data(folder: Path, k: int, n: int) -> tuple[Path, list[Path]]:
    """K tenants × N prompt/completion rows of the tiny tokenizer's words; one file of all, and one per tenant."""
    from hut_peft.lab.models import TINY_LLAMA_WORDS

    gen = torch.Generator().manual_seed(k)
    words = list(TINY_LLAMA_WORDS)

    def text(length: int) -> str:
        return " ".join(words[int(i)] for i in torch.randint(0, len(words), (length,), generator=gen))

    per_tenant = []
    everything = []
    for t in range(k):
        rows = [{"tenant": f"tenant{t:03d}", "prompt": text(8), "completion": text(16)} for _ in range(n)]
        everything += rows
        path = folder / f"tenant{t:03d}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        per_tenant.append(path)
    path = folder / "all.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in everything))
    return path, per_tenant


def cli(data: Path, model: str, out: Path, *extra: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "hut_peft.cli", "tenants", str(data), "--model", model, "--output-dir", str(out),
               "--batch-size", "4", "--rows-per-step", "64", "--epochs", "1", "--threads", "1", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start  # the whole process: interpreter, imports, model load, training, saving
    return {**json.loads((out / "tenants.json").read_text()), "wall_s": wall}


def e2e_section(ks: list[int], n: int) -> list[dict[str, Any]]:
    from hut_peft.lab.models import save_tiny_llama

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = save_tiny_llama(root / "model", hidden_size=256)
        for k in ks:
            data, per_tenant = write_tenant_data(root, k, n)
            joint = cli(data, model, root / f"joint{k}")
            separate = cli(data, model, root / f"separate{k}", "--separate")
            naive_wall, naive_peak = 0.0, 0.0
            for path in per_tenant:
                one = cli(path, model, root / f"naive{k}")
                naive_wall += one["wall_s"]
                naive_peak = max(naive_peak, one["peak_rss_mib"] or 0.0)
            row = {"tenants": k, "rows_per_tenant": n, "model": "tiny random Llama (hidden 256, 2 layers; save_tiny_llama)",
                   "targets": "q,v", "batch_size": 4, "rows_per_step": 64,
                   "wall_s": {"joint": joint["wall_s"], "separate": separate["wall_s"], "process_per_tenant": naive_wall},
                   "peak_rss_mib": {"joint": joint["peak_rss_mib"], "separate": separate["peak_rss_mib"],
                                    "process_per_tenant": naive_peak},
                   "steps": {"joint": joint["steps"], "separate": separate["steps"]}}
            row["speedup"] = {"vs_separate": naive_wall and separate["wall_s"] / joint["wall_s"],
                              "vs_process_per_tenant": naive_wall / joint["wall_s"]}
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["step", "lora", "e2e"], choices=["step", "lora", "e2e"])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"], choices=["tiny", "smollm2"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 16, 64, 256, 1024])
    parser.add_argument("--smollm2-ks", nargs="+", type=int, default=[64, 256, 1024],
                        help="Adapter counts for SmolLM2 (a step takes ~10 s here).")
    parser.add_argument("--smollm2-all-ks", nargs="+", type=int, default=[64, 256],
                        help="Adapter counts for SmolLM2 with every linear layer adapted: 1,024 adapters hold 7.2 GiB "
                             "of training state (616,320 parameters each, with AdamW's two moments), more than this "
                             "shared 23 GiB machine can spare.")
    parser.add_argument("--smollm2-reps", type=int, default=5)
    parser.add_argument("--e2e-ks", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--e2e-rows", type=int, default=16, help="Rows per tenant in the end-to-end runs.")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON file to write (stdout gets one line per measurement).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import peft
    import transformers

    result: dict[str, Any] = {
        "command": "python benchmarks/tenants.py " + " ".join(sys.argv[1:]),
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                        "threads": torch.get_num_threads(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "processor": platform.processor()},
        "batch": {"rows": ROWS, "tokens": TOKENS, "dtype": "float32"},
    }

    def save() -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    # The SmolLM2 steps last: the heaviest in time and memory (1,024 all-linear adapters hold ~7.5 GB of state).
    if "step" in args.sections and "tiny" in args.models:
        result["step"] = step_section(["tiny"], args.ks, args.reps, args.warmup)
        save()
    if "lora" in args.sections:
        result["lora"] = lora_section(args.reps, args.warmup)
        save()
    if "e2e" in args.sections:
        result["e2e"] = e2e_section(args.e2e_ks, args.e2e_rows)
        save()
    if "step" in args.sections and "smollm2" in args.models:
        result["step"] = result.get("step", []) + step_section(["smollm2"], args.smollm2_ks, args.smollm2_reps, 1,
                                                               all_ks=args.smollm2_all_ks)
        save()

if __name__ == "__main__":
    main()
