"""Run one vLLM engine on a chosen CPU GEMM path and print its answers as JSON (test_vllm_dtypes.py, test_vllm_compiled.py).

vLLM's CPU build picks a GEMM per layer when the model loads (``dispatch_cpu_unquantized_gemm``): sgl-kernel where
the CPU has AMX, oneDNN where vLLM was built with it, ``F.linear`` otherwise. Which one runs depends on the machine,
so a test on one machine would cover one path. This script forces the path before the engine is built, in the
engine's own process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so every path runs wherever the tests run::

    python tests/vllm_gemm_engine.py {native,onednn,fallback} {bfloat16,float32} SPEC_JSON

SPEC_JSON: the base folder, the adapters, the jobs; with ``"compile": true`` the engine is compiled for HUT adapters
(``HUT_PEFT_VLLM_COMPILE=1``) and the result also holds vLLM's compilation mode, dynamo's graph and graph-break
counts, and the error of loading ``"refused"`` (a folder the engine must refuse) before the jobs run.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process, where the patch below applies
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # llm.apply_model


def force_path(path: str) -> None:
    """Make vLLM's dispatcher skip the kernels that come before ``path`` in its order (sgl, oneDNN, fallback)."""
    import vllm._custom_ops as ops
    import vllm.model_executor.layers.utils as layer_utils

    if path in ("onednn", "fallback"):
        layer_utils.check_cpu_sgl_kernel = lambda *args: False
    if path == "fallback":
        ops._supports_onednn = False


def kernels(model) -> dict[str, bool]:
    """Per wrapped layer of the first block: whether vLLM kept the plain W0 (the fallback keeps every one)."""
    return {name.rsplit(".", 1)[-1]: m.base_layer.weight.numel() > 0 for name, m in model.named_modules()
            if name.startswith("model.layers.0.") and hasattr(m, "hut_in")}


def main(path: str, dtype: str, folders_json: str) -> None:
    force_path(path)
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    spec = json.loads(folders_json)
    if spec.get("compile"):
        os.environ["HUT_PEFT_VLLM_COMPILE"] = "1"
    llm = LLM(model=spec["base"], enable_lora=True, dtype=dtype, max_model_len=128, max_loras=len(spec["adapters"]),
              max_lora_rank=8, max_num_seqs=32, seed=0)
    ids = {name: i + 1 for i, name in enumerate(spec["adapters"])}
    refused = None
    if spec.get("refused"):
        try:
            llm.llm_engine.add_lora(LoRARequest("refused", 999, spec["refused"]))
        except Exception as err:  # noqa: BLE001 (the message is what the test checks)
            refused = str(err)
    jobs = spec["jobs"]  # [[adapter or null, prompt]]
    params = SamplingParams(temperature=0, max_tokens=spec["new_tokens"], ignore_eos=True, logprobs=0)
    outs = llm.generate([{"prompt_token_ids": prompt} for _, prompt in jobs], params, use_tqdm=False,
                        lora_request=[None if name is None else LoRARequest(name, ids[name], spec["adapters"][name])
                                      for name, _ in jobs])
    answers = []
    for out in outs:
        tokens = list(out.outputs[0].token_ids)
        answers.append({"tokens": tokens,
                        "logprobs": [step[t].logprob for step, t in zip(out.outputs[0].logprobs, tokens)]})
    from torch._dynamo.utils import counters

    print("RESULT " + json.dumps({
        "answers": answers, "kept_weights": llm.apply_model(kernels)[0], "refused": refused,
        "compilation_mode": int(llm.llm_engine.vllm_config.compilation_config.mode),
        "graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
    }), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
