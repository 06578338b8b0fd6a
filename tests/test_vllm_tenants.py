"""`hut-peft tenants` output serves unchanged: DIR/<tenant>/ folders in one compiled vLLM engine equal transformers.

What `hut-peft serve --adapters DIR` does with a tenants run, without the HTTP server (test_vllm_server.py covers
that): the tenants trained jointly by the CLI on a tiny Llama vLLM's CPU attention runs, every folder served in one
batch with base-model rows, compiled as `hut-peft serve` starts it for HUT adapters (tests/vllm_gemm_engine.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from hut_peft.cli import main
from hut_peft.lab.models import TINY_LLAMA_WORDS, save_tiny_llama
from hut_peft.lab.serve import find_adapters
from vllm_fixtures import PROMPTS, greedy_reference

NEW_TOKENS = 6
ENGINE = Path(__file__).with_name("vllm_gemm_engine.py")


def test_a_tenants_folder_serves_in_one_vllm_engine(tmp_path: Path) -> None:
    base = save_tiny_llama(tmp_path / "base", hidden_size=128)
    gen, words = torch.Generator().manual_seed(0), list(TINY_LLAMA_WORDS)
    rows = [{"tenant": tenant, "text": " ".join(words[int(i)] for i in torch.randint(0, len(words), (8,), generator=gen))}
            for tenant, n in (("acme", 6), ("globex", 3)) for _ in range(n)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["tenants", str(tmp_path / "rows.jsonl"), "--model", base, "--output-dir", str(tmp_path / "tenants"),
                 "--epochs", "3", "--learning-rate", "0.1", "--threads", "1",
                 "--target-modules", "q_proj", "v_proj", "down_proj"]) == 0
    adapters = {name: str(folder) for name, folder in find_adapters(tmp_path / "tenants").items()}
    assert sorted(adapters) == ["acme", "globex"]
    jobs = [(name, i) for i in range(len(PROMPTS)) for name in [None, *adapters]]
    spec = {"base": base, "adapters": adapters, "new_tokens": NEW_TOKENS, "compile": True,
            "jobs": [(name, PROMPTS[i]) for name, i in jobs]}
    done = subprocess.run([sys.executable, str(ENGINE), "native", "float32", json.dumps(spec)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result, done.stderr[-3000:]
    answers = json.loads(result[0][len("RESULT "):])["answers"]
    for (name, i), answer in zip(jobs, answers):
        adapter = None if name is None else adapters[name]
        assert answer["tokens"] == greedy_reference(Path(base), adapter, PROMPTS[i], NEW_TOKENS)[0], (name, i)
    by_tenant = {name: [a["tokens"] for (n, _), a in zip(jobs, answers) if n == name] for name in [None, *adapters]}
    assert by_tenant["acme"] != by_tenant[None] and by_tenant["globex"] != by_tenant[None]  # training moved them
