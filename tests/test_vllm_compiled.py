"""A vLLM engine compiled with HUT adapters inside (CPU, ``HUT_PEFT_VLLM_COMPILE=1``): tokens equal transformers.

vLLM's CPU build runs any engine with adapters eagerly; for HUT adapters the plugin keeps vLLM's compilation
(torch.compile of the whole model, dynamic batch sizes) and the wrappers take every branch every step, as vLLM
compiles them on GPUs. One engine, in its own process (tests/vllm_gemm_engine.py), fp32: every row of one batch
its own adapter or the base model, greedy tokens and log-probabilities against transformers + peft; dynamo
traced the model as one graph, with no graph break; a LoRA folder is refused (the engine has no LoRA path) and
the engine goes on serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_fixtures import PROMPTS, greedy_reference, make_served_models

NEW_TOKENS = 6
ENGINE = Path(__file__).with_name("vllm_gemm_engine.py")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folders = make_served_models(tmp_path_factory.mktemp("vllm-compiled"))
    adapters = {name: str(folders["adapters"][name]) for name in ("attn", "all", "rows")}  # HUT only
    jobs = [(name, i) for i in range(len(PROMPTS)) for name in [None, *adapters]]
    spec = {"base": str(folders["base"]), "adapters": adapters, "new_tokens": NEW_TOKENS, "compile": True,
            "refused": str(folders["adapters"]["lora"]), "jobs": [(name, PROMPTS[i]) for name, i in jobs]}
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "VLLM_CACHE_ROOT": str(tmp_path_factory.mktemp("vllm-cache"))}  # compile here, not from a cache
    done = subprocess.run([sys.executable, str(ENGINE), "native", "float32", json.dumps(spec)], capture_output=True,
                          text=True, timeout=900, env=env)
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and result, f"the compiled engine died:\n{done.stderr[-3000:]}"
    return {"folders": folders, "jobs": jobs, **json.loads(result[0][len("RESULT "):])}


def test_the_engine_is_compiled_as_one_graph(compiled: dict) -> None:
    from vllm.config import CompilationMode

    assert compiled["compilation_mode"] != CompilationMode.NONE
    assert compiled["graphs"] >= 1 and compiled["graph_breaks"] == 0, (compiled["graphs"], compiled["graph_breaks"])


def test_mixed_adapters_and_base_rows_equal_transformers(compiled: dict) -> None:
    folders = compiled["folders"]
    for (name, i), answer in zip(compiled["jobs"], compiled["answers"]):
        adapter = None if name is None else folders["adapters"][name]
        tokens, logprobs = greedy_reference(folders["base"], adapter, PROMPTS[i], NEW_TOKENS)
        assert answer["tokens"] == tokens, (name, i)
        assert max(abs(a - b) for a, b in zip(answer["logprobs"], logprobs)) < 1e-4, (name, i)
    by_adapter = {}
    for (name, _), answer in zip(compiled["jobs"], compiled["answers"]):
        by_adapter.setdefault(name, []).append(answer["tokens"])
    assert all(by_adapter[name] != by_adapter[None] for name in by_adapter if name is not None)


def test_a_lora_folder_is_refused_with_the_way_out(compiled: dict) -> None:
    assert compiled["refused"] is not None and "not a HUT adapter" in compiled["refused"]
    assert "HUT_PEFT_VLLM_COMPILE=0" in compiled["refused"]
