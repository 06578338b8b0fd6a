"""Save and reload what a method trained, for every method in the registry (hand-written ones included).

peft methods can also use peft's own ``save_pretrained`` / ``PeftModel.from_pretrained``; this is the one path
that works for all: ``method.json`` (method, task type, options) and ``trainable.safetensors`` (the trainable
parameters by name). Reloading re-applies the method to a fresh base model and copies the tensors in, checking
that every name and shape matches. Both files are written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..atomic import atomic_write
from .registry import RECORD_ATTR, apply_method

WEIGHTS_NAME = "trainable.safetensors"
RECORD_NAME = "method.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"option value {value!r} of type {type(value).__name__} cannot be saved in {RECORD_NAME}")


def save_trainable(model: nn.Module, folder: Union[str, os.PathLike]) -> Path:
    """Write ``method.json`` and ``trainable.safetensors`` for a model returned by ``apply_method``.

    Raises:
        ValueError: The model was not built by ``apply_method`` (nothing records which method it uses).
    """
    from safetensors.torch import save_file

    record = getattr(model, RECORD_ATTR, None)
    if record is None:
        raise ValueError(
            f"save_trainable: this {type(model).__name__} was not built by hut_peft.lab.methods.apply_method, so "
            "nothing records which method to re-apply on load. Build it with apply_method(...)."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().to("cpu").contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}
    text = json.dumps({**record, "trainable": sum(t.numel() for t in tensors.values())}, indent=2,
                      default=_jsonable)
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write(folder / RECORD_NAME, lambda tmp: Path(tmp).write_text(text + "\n"))
    return folder


def load_trainable(model: nn.Module, folder: Union[str, os.PathLike]) -> nn.Module:
    """Re-apply the saved method to ``model`` (a fresh copy of the same base) and load the trained tensors.

    Raises:
        FileNotFoundError: ``method.json`` or ``trainable.safetensors`` is missing.
        ValueError: The saved tensors do not match the re-applied method's trainable parameters (names or
            shapes): a different base model or method options.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (RECORD_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"load_trainable: {folder / name} not found; save with save_trainable(model, folder).")
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
        method, task_type, options = record["method"], record.get("task_type"), dict(record.get("options") or {})
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"load_trainable: {folder / RECORD_NAME} is not a method record ({err}).") from err
    out = apply_method(method, model, task_type=task_type, **options)
    tensors = load_file(str(folder / WEIGHTS_NAME))
    params = {n: p for n, p in out.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(params.keys() - tensors.keys()), sorted(tensors.keys() - params.keys())
    wrong = sorted(n for n in params.keys() & tensors.keys() if tuple(params[n].shape) != tuple(tensors[n].shape))
    if missing or unexpected or wrong:
        raise ValueError(
            f"load_trainable: {folder / WEIGHTS_NAME} does not fit method {method!r} on this "
            f"{type(model).__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}. "
            "Load it on the base model it was trained from."
        )
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n].to(p.dtype))
    return out
