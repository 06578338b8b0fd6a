"""What every recipe shares: typed configs from flags or files, atomic JSON, run metadata, seed summaries."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import tempfile
import typing
from pathlib import Path
from typing import Any, Optional, Sequence, TypeVar

import yaml

C = TypeVar("C")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temp file beside ``path`` and rename it over: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Atomic counterpart of ``Path.write_text``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def environment_info() -> dict[str, Any]:
    """Library versions and hardware, logged with every result (STYLE §9)."""
    import accelerate
    import datasets
    import peft
    import torch
    import transformers

    from .. import __version__

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
