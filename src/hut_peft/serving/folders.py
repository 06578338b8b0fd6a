"""Check a saved adapter folder before any engine reads it: its config parses, its weights file is whole.

Pure Python (no torch, no vLLM), so ``hut-peft serve`` can check every folder before vLLM starts and name the bad
one, and the vLLM loader can refuse a folder as the client's fault rather than fail inside the engine. The shapes
of the tensors against the running model are checked later, by the loader, where the model is known.

Every message starts with ``BAD_ADAPTER`` (or the loader's ``HUT adapter``), which the API server's error mapping
(api.py) reads to answer 400 instead of vLLM's 500.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
BAD_ADAPTER = "bad adapter"
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own cap on the JSON header


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``adapter_config.json`` of ``folder`` as a dict.

    Raises:
        FileNotFoundError: the folder has no ``adapter_config.json``.
        ValueError: the file is not a JSON object with a ``peft_type``.
    """
    path = Path(folder) / CONFIG_NAME
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{BAD_ADAPTER} {folder}: no {CONFIG_NAME} (save it with save_pretrained)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{BAD_ADAPTER} {folder}: {CONFIG_NAME} is not valid JSON ({err}); "
                         "write it again with save_pretrained") from None
    if not isinstance(config, dict) or "peft_type" not in config:
        raise ValueError(f"{BAD_ADAPTER} {folder}: {CONFIG_NAME} has no peft_type; it is not a peft adapter config")
    return config


def check_weights(folder: str | os.PathLike[str]) -> list[str]:
    """The tensor names in ``folder``'s ``adapter_model.safetensors``, after checking the file is whole.

    Reads only the header (safetensors' layout: an 8-byte little-endian length, a JSON header, then the data), and
    checks that every tensor's bytes lie inside the file, so a truncated copy is caught without loading it.

    Raises:
        FileNotFoundError: no weights file.
        ValueError: a header that cannot be read, or tensors that run past the end of the file.
    """
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{BAD_ADAPTER} {folder}: no {WEIGHTS_NAME} (save it with save_pretrained)")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < length <= min(_HEADER_LIMIT, size - 8):
            raise ValueError(f"{BAD_ADAPTER} {folder}: {WEIGHTS_NAME} is not a safetensors file ({size} bytes, header "
                             "unreadable); copy or save it again")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{BAD_ADAPTER} {folder}: {WEIGHTS_NAME} has a corrupt header; copy or save it again") from None
    data = size - 8 - length
    names = [name for name in header if name != "__metadata__"]
    end = max((int(header[name]["data_offsets"][1]) for name in names), default=0)
    if end > data:
        raise ValueError(f"{BAD_ADAPTER} {folder}: {WEIGHTS_NAME} is truncated ({data} bytes of tensor data, the header "
                         f"needs {end}); copy or save it again")
    return names


def check_folder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``read_config`` and ``check_weights`` together; returns the config."""
    config = read_config(folder)
    check_weights(folder)
    return config
