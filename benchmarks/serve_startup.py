"""Where `hut-peft serve`'s start-up goes: the documented command, timed phase by phase from its own log (issue 27).

    python benchmarks/serve_startup.py --output docs/results/serve-startup.json

Runs `hut-peft serve --adapters DIR -- --port P` exactly as docs/serving.md writes it (the default model, one HUT
adapter on q_proj and v_proj), twice: cold (empty hut-peft and vLLM caches: the default model is exported and the
model compiled) and warm (both caches kept from the cold run). Each line the server prints is timestamped when it
arrives; the phases end at vLLM's own log lines, and the last one at the first answered completion.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

# (phase, the log text that ends it); the phases run in this order.
MARKERS = [
    ("hut-peft command (imports, adapter checks, model export)", "hut_peft.serving.vllm_main serve"),
    ("model weights loaded", "Loading weights took"),
    ("engine ready (compile or warm-up, KV cache)", "init engine (profile, create kv cache, warmup model) took"),
    ("adapters loaded", "Loaded new LoRA adapter"),
    ("API up", "Application startup complete"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_adapter(folder: Path) -> Path:
    """One HUT adapter (q_proj, v_proj; perturbed values) for the default model, saved as save_pretrained writes it."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from hut_peft import HUTConfig
    from hut_peft.lab.models import DEFAULT_DECODER, resolve_model

    if (folder / "tenant-a" / "adapter_config.json").is_file():
        return folder
    source = resolve_model(DEFAULT_DECODER)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **source.kwargs())
    get_peft_model(model, HUTConfig(r=4, target_modules=["q_proj", "v_proj"], shift=False, init="perturbed",
                                    init_std=0.05)).save_pretrained(folder / "tenant-a")
    return folder


def start_once(adapters: Path, env: dict[str, str], timeout: float) -> dict:
    """Start the documented command, time its phases and one completion, then stop it."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "hut_peft.cli", "serve", "--adapters", str(adapters), "--", "--port", str(port)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: dict[str, float] = {}
    log: list[str] = []

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            log.append(line)
            for phase, text in MARKERS:
                if text in line and phase not in seen:
                    seen[phase] = time.perf_counter() - start

    threading.Thread(target=read, daemon=True).start()
    answered: Optional[float] = None
    try:
        while time.perf_counter() - start < timeout and process.poll() is None:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=60,
                                   json={"model": "tenant-a", "prompt": "Name a river in Wales:", "max_tokens": 8})
                if reply.status_code == 200:
                    answered = time.perf_counter() - start
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    if answered is None:
        raise RuntimeError(f"no completion within {timeout} s:\n{''.join(log[-40:])}")
    return {"phases_end_s": seen, "first_completion_s": answered}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="serve-startup-"))
    adapters = make_adapter(work / "adapters")
    env = {**os.environ, "HUT_PEFT_CACHE": str(work / "hut-peft-cache"), "VLLM_CACHE_ROOT": str(work / "vllm-cache")}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # as a new user runs it
    runs = {label: start_once(adapters, env, args.timeout) for label in ("cold", "warm")}
    lines = ["| phase (ends at) | cold: s since the command | warm: s since the command |", "|---|---:|---:|"]
    for phase, _ in MARKERS:
        lines.append(f"| {phase} | " + " | ".join(
            f"{runs[r]['phases_end_s'].get(phase, float('nan')):.1f}" for r in runs) + " |")
    lines.append("| first completion answered | " + " | ".join(f"{runs[r]['first_completion_s']:.1f}" for r in runs) + " |")
    print("\n".join(lines))
    if args.output:
        from hut_peft.lab.atomic import write_text_atomic

        record = {"runs": runs, "cpu": os.cpu_count(), "load_average": os.getloadavg()}
        write_text_atomic(args.output, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
