"""What every recipe shares: typed configs from flags or files, atomic JSON, run metadata, seed summaries."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, TypeVar

import yaml

from ..atomic import write_json_atomic

C = TypeVar("C")


def run_seeds(
    seeds: str, output_dir: str | os.PathLike, resume: bool, train_one: Callable[[int, Path], dict[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """Run ``train_one(seed, seed_dir)`` per seed; with ``resume`` reuse finished seeds' ``metrics.json``.

    ``train_one`` returns the seed's record with ``_is_main`` (whether this process is rank 0, the only one
    that writes). Returns the records and whether this process is the main one.
    """
    records, is_main = [], True
    for seed in parse_seeds(seeds):
        seed_dir = Path(output_dir) / f"seed-{seed}"
        done = seed_dir / "metrics.json"
        if resume and done.is_file():
            records.append(json.loads(done.read_text()))
            continue
        record = train_one(seed, seed_dir)
        is_main = record.pop("_is_main")
        if is_main:
            write_json_atomic(done, record)
            records.append(record)
    return records, is_main


def write_results(out: Path, recipe_name: str, config: dict[str, Any], settings: dict[str, Any],
                  records: list[dict[str, Any]], summary: dict[str, Any], started: float,
                  **extra: Any) -> dict[str, Any]:
    """The one ``results.json`` layout of every recipe: config, settings, seeds, summary, counts, time, versions."""
    results = {
        "recipe": recipe_name,
        "config": config,
        "settings": settings,
        **extra,
        "seeds": records,
        "summary": summary,
        "trainable_parameters": records[0]["trainable_parameters"],
        "total_parameters": records[0]["total_parameters"],
        "wall_time_s": time.perf_counter() - started,
        "environment": environment_info(),
    }
    write_json_atomic(out / "results.json", results)
    return results


PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def native_bf16() -> bool:
    """Whether this machine computes bf16 natively: a CUDA GPU that supports it, else a CPU with AVX-512 BF16
    or AMX (oneDNN then runs bf16 matmuls at about twice fp32's rate; elsewhere bf16 on a CPU is emulated)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(name: str) -> str:
    """``auto`` → ``bf16`` autocast where the device computes it natively, else ``fp32``.

    Mixed precision here is autocast only: the model's parameters, adapters included, and the optimizer state stay
    fp32; matmuls run in bf16 (fp16 with a loss scaler on GPUs).

    Raises:
        ValueError: an unknown name, or fp16 without a GPU (CPU autocast has no fp16 loss scaling).
    """
    import torch

    if name not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}.")
    if name == "auto":
        return "bf16" if native_bf16() else "fp32"
    if name == "fp16" and not torch.cuda.is_available():
        raise ValueError("--precision fp16 needs a CUDA GPU; on a CPU use bf16 (or auto, which picks it where native).")
    return name


def autocast(precision: str, device: Any):
    """The autocast context of a resolved precision on ``device`` (a no-op for fp32)."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def training_arguments(seed_dir: Path, seed: int, settings: dict[str, Any], recipe: Any, **extra: Any):
    """transformers' TrainingArguments shared by the recipes: AdamW, linear schedule, CPU/GPU, gloo under torchrun,
    autocast in ``settings["precision"]``, batches grouped by length when ``settings["group_by_length"]``."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(seed_dir),
        learning_rate=settings["learning_rate"],
        num_train_epochs=settings["epochs"],
        max_steps=recipe.max_steps,
        per_device_train_batch_size=settings["batch_size"],
        lr_scheduler_type="linear",
        optim="adamw_torch",
        save_strategy="epoch" if recipe.save_checkpoints else "no",
        save_total_limit=1,
        logging_steps=recipe.logging_steps,
        seed=seed,
        data_seed=seed,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        ddp_backend=ddp_backend(),
        dataloader_num_workers=0,
        bf16=settings["precision"] == "bf16",
        fp16=settings["precision"] == "fp16",
        train_sampling_strategy="group_by_length" if settings["group_by_length"] else "random",
        **extra,
    )


def throughput_callback(tokens_per_epoch: int):
    """A ``TrainerCallback`` that measures training tokens per second: real (unpadded) tokens over the time spent
    in ``Trainer.train`` less the time spent evaluating, counted from where a resumed run starts.

    Read ``callback.result()`` after training: ``{"train_tokens", "train_time_s", "train_tokens_per_s"}``.
    """
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start_epoch, self.started, self.eval_s, self.elapsed = state.epoch or 0.0, time.perf_counter(), 0.0, 0.0

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.eval_s += (metrics or {}).get("eval_runtime", 0.0)

        def on_train_end(self, args, state, control, **kwargs):
            self.elapsed = time.perf_counter() - self.started - self.eval_s
            self.epochs = (state.epoch or 0.0) - self.start_epoch

        def result(self) -> dict[str, float]:
            tokens = tokens_per_epoch * self.epochs
            return {"train_tokens": int(tokens), "train_time_s": self.elapsed,
                    "train_tokens_per_s": tokens / self.elapsed if self.elapsed > 0 else 0.0}

    return Throughput()


def environment_info() -> dict[str, Any]:
    """Library versions and hardware, logged with every result (STYLE §9)."""
    import accelerate
    import datasets
    import peft
    import torch
    import transformers

    from hut_peft import __version__

    info: dict[str, Any] = {
        "hut_peft": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def ddp_backend() -> Optional[str]:
    """gloo for CPU processes launched by torchrun / accelerate; the default (NCCL) on GPUs; none alone."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        return "gloo"
    return None


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single seed), as the paper reports over seeds."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` or ``3`` → a list of seeds."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"--seeds: no seed in {text!r}; give e.g. '0' or '0,1,2' or '0-4'.")
    return seeds


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML (or JSON, a subset of YAML) file of recipe fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of field: value, got {type(data).__name__}.")
    return data


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, positional: Sequence[str] = ()) -> None:
    """One flag per dataclass field, typed and documented from the field's ``help`` metadata."""
    hints = typing.get_type_hints(cls)
    parser.add_argument("--config", help="YAML file of these fields; flags given on the command line win.")
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is False:
            continue
        help_text = f.metadata.get("help", "")
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if origin is typing.Union and len(args) == 1 else hint
        default = argparse.SUPPRESS
        if base is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif base in (int, float, str):
            parser.add_argument(_flag(f.name), type=base, default=default, help=help_text)
        else:  # lists, dicts: YAML on the command line, e.g. --method-options '{r: 4}'
            parser.add_argument(_flag(f.name), type=yaml.safe_load, default=default, help=help_text + " (YAML)")


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Build the dataclass from ``--config`` then the flags that were given (flags win)."""
    values: dict[str, Any] = load_config_file(args.config) if getattr(args, "config", None) else {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"--config: unknown field(s) {sorted(unknown)}; known: {sorted(names)}")
    for name in names:
        if hasattr(args, name):
            values[name] = getattr(args, name)
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SystemExit(f"error: missing {', '.join(_flag(m) for m in missing)} (or give it in --config FILE)")
    return cls(**values)


def epoch_metrics(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluations in a Trainer's ``state.log_history``: one dict per evaluation, ``eval_`` prefixes dropped,
    timings left out, ``epoch`` kept."""
    return [
        {k.removeprefix("eval_"): v for k, v in log.items()
         if (k.startswith("eval_") and not k.endswith(("runtime", "per_second"))) or k == "epoch"}
        for log in log_history
        if any(k.startswith("eval_") for k in log)
    ]


def best_epoch(record: dict[str, Any], key: str) -> dict[str, Any]:
    """The epoch with the best headline metric (the paper's protocol), or the final one if none logged."""
    candidates = [e for e in record["per_epoch"] if key in e] or [record["final"]]
    return max(candidates, key=lambda e: e.get(key, float("-inf")))


def head_optimizer(model, learning_rate: float, head_learning_rate: float, weight_decay: float):
    """AdamW with the task head (parameters under a ``classifier``, ``score`` or ``qa_outputs`` module, peft's
    ``modules_to_save`` copies included) at its own rate."""
    import torch

    from ..methods.arch import HEAD_NAMES

    head, body = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (head if set(HEAD_NAMES) & set(name.split(".")) else body).append(param)
    if not head:
        raise ValueError(f"--head-learning-rate: this model has no trainable task head ({', '.join(HEAD_NAMES)}).")
    groups = [{"params": body, "lr": learning_rate}, {"params": head, "lr": head_learning_rate}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay)


def whole_model(trainer: Any, rebuild: Callable[[], Any]) -> Any:
    """The trained model with whole weights, on rank 0, for work that rank 0 does alone (decoding); None elsewhere.

    Under one process, DDP or ZeRO-1/2 that is ``trainer.model`` itself. Under FSDP or ZeRO-3 each rank holds a
    shard and a sharded forward needs every rank, so every rank takes part in gathering the full state dict and
    rank 0 loads it into ``rebuild()`` (the same model, built again without sharding). Every rank must call it.
    """
    accelerator = trainer.accelerator
    zero3 = trainer.is_deepspeed_enabled and accelerator.state.deepspeed_plugin.zero_stage == 3
    if not (zero3 or trainer.is_fsdp_enabled):
        return trainer.model
    state = accelerator.get_state_dict(trainer.deepspeed if zero3 else trainer.model)
    if not trainer.is_world_process_zero():
        return None
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # else from_pretrained would build the copy partitioned again (zero.Init)
    model = rebuild()
    model.load_state_dict(state)
    return model.to(trainer.args.device)
