"""HUT adapters under vLLM in the dtype users get by default (bf16) and on each of vLLM's CPU GEMM paths.

vLLM's CPU build picks sgl-kernel (AMX), oneDNN or ``F.linear`` per layer, by machine and dtype; the other vLLM
tests run fp32 on whichever this machine picks. Here each path is forced (tests/vllm_gemm_engine.py) and one
engine per path serves a batch that mixes base rows, HUT adapters on fused layers (fully and partly adapted),
on row-parallel layers only, and a LoRA. An engine that dies fails the test; answers are checked against
transformers in fp32 (bf16: the log-probability of every chosen token, within bf16's error, which the adapters'
own effect exceeds many times over).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_fixtures import PROMPTS, make_served_models, teacher_forced_logprobs

NEW_TOKENS = 6
BF16_TOLERANCE = 0.02  # |log p| gap between a bf16 engine and fp32 transformers on the same tokens (measured: <= 0.007)
ENGINE = Path(__file__).with_name("vllm_gemm_engine.py")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_served_models(tmp_path_factory.mktemp("vllm-dtypes"))


def serve(folders: dict, path: str, dtype: str) -> tuple[list, list[dict], dict]:
    adapters = {name: str(folder) for name, folder in folders["adapters"].items()}
    jobs = [(name, i) for i in range(len(PROMPTS)) for name in [None, *adapters]]  # every row its own adapter
    spec = {"base": str(folders["base"]), "adapters": adapters, "new_tokens": NEW_TOKENS,
            "jobs": [(name, PROMPTS[i]) for name, i in jobs]}
    done = subprocess.run([sys.executable, str(ENGINE), path, dtype, json.dumps(spec)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result, f"the {path} engine ({dtype}) died:\n{done.stderr[-3000:]}"
    answers = json.loads(result[0][len("RESULT "):])
    return jobs, answers["answers"], answers["kept_weights"]


def reference(folders: dict, name: str | None, prompt: int, tokens: list[int]) -> list[float]:
    adapter = None if name is None else folders["adapters"][name]
    return teacher_forced_logprobs(folders["base"], adapter, PROMPTS[prompt], tokens)


@pytest.mark.parametrize("path", ["native", "onednn", "fallback"])
def test_bf16_engine_serves_every_adapter_mix_on_each_gemm_path(folders: dict, path: str) -> None:
    if path == "onednn" and not _vllm_has_onednn():
        pytest.skip("this vLLM build has no oneDNN GEMM")
    jobs, answers, kept = serve(folders, path, "bfloat16")
    if path == "fallback":  # the path really ran: vLLM's fallback keeps every layer's plain W0
        assert all(kept.values()), kept
    elif path == "onednn":  # oneDNN packs W0 and drops it, except fused layers, which the plugin keeps
        assert kept == {"qkv_proj": True, "o_proj": False, "gate_up_proj": True, "down_proj": False}, kept
    gaps, effects = [], {name: 0.0 for name, _ in jobs if name is not None}
    for (name, i), answer in zip(jobs, answers):
        assert len(answer["tokens"]) == NEW_TOKENS, (name, i)
        expected = reference(folders, name, i, answer["tokens"])
        gaps.append(max(abs(a - b) for a, b in zip(answer["logprobs"], expected)))
        if name is not None:  # how far the adapter moves fp32 transformers on these tokens: the signal to resolve
            base = reference(folders, None, i, answer["tokens"])
            effects[name] = max(effects[name], *(abs(a - b) for a, b in zip(expected, base)))
    assert max(gaps) < BF16_TOLERANCE, max(gaps)
    assert min(effects.values()) > 5 * BF16_TOLERANCE, effects  # each adapter's effect is far above bf16's error


def test_fp32_fallback_engine_equals_transformers(folders: dict) -> None:
    """The CPUs without vLLM's packed kernels, in fp32: every chosen token as fp32 transformers' greedy choice."""
    jobs, answers, kept = serve(folders, "fallback", "float32")
    assert all(kept.values()), kept
    for (name, i), answer in zip(jobs, answers):
        expected = reference(folders, name, i, answer["tokens"])
        assert max(abs(a - b) for a, b in zip(answer["logprobs"], expected)) < 1e-4, (name, i)


def _vllm_has_onednn() -> bool:
    import vllm._custom_ops as ops

    return bool(ops._supports_onednn)

