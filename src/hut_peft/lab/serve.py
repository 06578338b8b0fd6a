"""``hut-peft serve``: vLLM's OpenAI-compatible server for a base model and a folder of adapters.

It is ``vllm serve`` with the arguments written for you, not a server of our own: HUT adapters reach vLLM
through hut-peft's plugin (hut_peft/serving), and this command only builds the command line::

    hut-peft serve [MODEL] --adapters DIR [--max-loras N] [--allow-runtime-adapters] [-- any vllm serve flags]

MODEL is a hub name or folder (default: the embedded SmolLM2-135M, written once as a bf16 folder, because
vLLM's CPU build does not run its GGUF file). Every subfolder of DIR holding ``adapter_config.json`` becomes
``--lora-modules NAME=PATH`` (HUT or LoRA); ``--max-lora-rank`` is the smallest vLLM allows that fits the
LoRA adapters among them (HUT needs none). vLLM's safety defaults stay: loading adapters at run time
(``/v1/load_lora_adapter``) is off unless ``--allow-runtime-adapters``; ``--api-key`` and the rest pass through.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

PASSES_THROUGH = True  # the CLI hands everything after `--` to run() as args.passthrough
# vLLM 0.32's accepted --max-lora-rank values (vllm/config/lora.py).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
CACHE = Path(os.environ.get("HUT_PEFT_CACHE", Path.home() / ".cache" / "hut-peft"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default="smollm2",
                        help="Base model: hub name or folder; default: the embedded SmolLM2-135M-Instruct.")
    parser.add_argument("--adapters", required=True,
                        help="A folder of saved adapters (each subfolder one, served under its name), or one adapter folder.")
    parser.add_argument("--max-loras", type=int, default=None,
                        help="Adapters in one batch (vLLM's slots; default: the number of adapters, at most 64).")
    parser.add_argument("--allow-runtime-adapters", action="store_true",
                        help="Enable /v1/load_lora_adapter and /v1/unload_lora_adapter "
                             "(vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING; for trusted networks only).")
    parser.add_argument("--print-command", action="store_true", help="Print the vllm command and exit.")
    parser.epilog = "Flags after -- go to `vllm serve` unchanged (--port, --api-key, --dtype, ...)."


def find_adapters(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{name: folder}``: ``folder`` itself if it is an adapter, else each subfolder that is one, sorted by name.

    The library's ``hut_peft.hut.find_saved_adapters`` scans the same way; importing it loads peft and transformers
    (about 6 s here) before vLLM starts, so this command keeps its own scan, with absolute paths for vLLM.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: no adapter in it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--adapters {folder}: no such folder")
    if (root / "adapter_config.json").is_file():
        return {root.resolve().name: root.resolve()}
    found = {p.name: p.resolve() for p in sorted(root.iterdir()) if (p / "adapter_config.json").is_file()}
    if not found:
        raise ValueError(f"--adapters {folder}: no adapter in it (a saved adapter is a folder with adapter_config.json, "
                         "as save_pretrained writes it)")
    return found


def lora_rank_flag(adapters: dict[str, Path]) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that fits every LoRA adapter here (1 when all are HUT)."""
    ranks = [1]
    for _name, folder in adapters.items():
        config = json.loads((folder / "adapter_config.json").read_text())
        if str(config.get("peft_type", "")).upper() != "HUT":
            ranks.append(max([int(config.get("r", 8)), *map(int, (config.get("rank_pattern") or {}).values())]))
    need = max(ranks)
    for allowed in VLLM_LORA_RANKS:
        if allowed >= need:
            return allowed
    raise ValueError(f"an adapter has rank {need}, above vLLM's largest --max-lora-rank {VLLM_LORA_RANKS[-1]}")


def export_smollm2(target: Optional[Path] = None) -> Path:
    """The embedded SmolLM2 as a transformers folder (bf16 safetensors), written once and atomically."""
    target = target or CACHE / "smollm2-135m-instruct-bf16"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import DEFAULT_DECODER, drop_gguf_quantization_marker, resolve_model

    source = resolve_model(DEFAULT_DECODER)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.bfloat16, **source.kwargs())
        drop_gguf_quantization_marker(model).save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source.path, **source.kwargs()).save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def vllm_command(model: str, adapters: dict[str, Path], max_loras: Optional[int], extra: list[str]) -> list[str]:
    """The ``vllm serve`` command line (as a list) for ``model`` with ``adapters``; ``extra`` goes last, so it wins."""
    slots = max_loras or min(len(adapters), 64)
    command = [sys.executable, "-m", "hut_peft.serving.vllm_main", "serve", model, "--enable-lora",
               "--max-loras", str(slots), "--max-cpu-loras", str(max(slots, len(adapters))),
               "--max-lora-rank", str(lora_rank_flag(adapters)), "--lora-modules"]
    command += [f"{name}={folder}" for name, folder in adapters.items()]
    return command + extra


def run(args: Any) -> int:
    adapters = find_adapters(args.adapters)
    extra = list(args.passthrough)
    model = str(export_smollm2()) if args.model == "smollm2" else args.model
    command = vllm_command(model, adapters, args.max_loras, extra)
    env = dict(os.environ)
    if args.allow_runtime_adapters:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    print(" ".join(command), file=sys.stderr if not args.print_command else sys.stdout, flush=True)
    if args.print_command:
        return 0
    os.execve(sys.executable, command, env)  # vLLM takes over this process: its signals, its exit code
    return 0  # not reached
