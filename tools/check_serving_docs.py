"""Run docs/serving.md's vLLM commands as the page writes them: the `hut-peft serve` line, then its Python client.

    python tools/check_serving_docs.py        # about 1-3 minutes here; tests/test_docs_serving.py runs it (slow)

The commands are read from the page, not copied, so the page cannot drift: every `hut-peft serve` line of its
bash blocks runs in a fresh folder holding `adapters/tenant-a` and `adapters/tenant-q` (HUT adapters for the
default model, as the page's client names them) with `KEY` set, with no other flag or variable; then the
page's client block runs against it, with `KEY` defined as the shell's. Exits 1 naming the command that failed.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
START_TIMEOUT_S = 900  # a first start compiles the model: 173 s on an idle machine here


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def serve_commands(text: str) -> list[str]:
    """Every `hut-peft serve` line of the page's bash blocks, without its comment."""
    return [line.split("  #")[0].strip() for block in blocks(text, "bash") for line in block.splitlines()
            if line.startswith("hut-peft serve ")]


def client_block(text: str) -> str:
    return next(block for block in blocks(text, "python") if "OpenAI(base_url=" in block)


def make_adapters(folder: Path) -> None:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from hut_peft import HUTConfig
    from hut_peft.lab.models import DEFAULT_DECODER, resolve_model

    source = resolve_model(DEFAULT_DECODER)
    for seed, name in enumerate(["tenant-a", "tenant-q"]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **source.kwargs())
        get_peft_model(model, HUTConfig(r=4, target_modules=["q_proj", "v_proj"], shift=False, init="perturbed",
                                        init_std=0.05)).save_pretrained(folder / name)


def run_command(command: str, work: Path, key: str, client: str) -> None:
    import httpx

    env = {**os.environ, "KEY": key, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # as a new user has it: unset
    log = open(work / "server.log", "w")
    server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    start = time.time()
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"`{command}` exited ({server.returncode}):\n{(work / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get("http://localhost:8000/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() - start > START_TIMEOUT_S:
                raise SystemExit(f"`{command}` did not start in {START_TIMEOUT_S} s:\n"
                                 f"{(work / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        print(f"`{command}`: up after {time.time() - start:.0f} s", flush=True)
        done = subprocess.run([sys.executable, "-c", f"KEY = {key!r}\n{client}"], cwd=work, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0 or "tenant-q" not in done.stdout:
            raise SystemExit(f"the page's client failed against `{command}`:\n{done.stderr[-3000:]}")
        print(done.stdout, end="", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main() -> int:
    text = PAGE.read_text()
    commands = serve_commands(text)
    if not commands:
        raise SystemExit(f"no `hut-peft serve` command in {PAGE}")
    client = client_block(text)
    with tempfile.TemporaryDirectory(prefix="serving-docs-") as tmp:
        work = Path(tmp)
        make_adapters(work / "adapters")
        for command in commands:
            run_command(command, work, secrets.token_hex(8), client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
