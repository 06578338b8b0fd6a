"""vLLM's CPU LoRA with every slot taken: do base-model requests in the same batch stay the base model? (issue 22)

    python benchmarks/vllm_cpu_lora_slots.py            # vLLM alone (hut-peft's plugin off)
    python benchmarks/vllm_cpu_lora_slots.py --plugin

vLLM 0.32's CPU LoRA ops index the adapter stacks with each token's raw slot, and a token without an adapter has
slot -1, which wraps to the last slot. With 2 slots, 2 LoRA adapters and 3 base-model requests in one batch,
this prints, per request, whether vLLM's greedy tokens equal transformers' (tiny Llama, fp32). Measured on
2026-11-30 without the plugin: the 2 LoRA requests right, the 3 base-model requests wrong. With the plugin, its
wrappers keep those rows (tests/test_vllm_slots.py asserts that).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from vllm_fixtures import PROMPTS, adapted_model, greedy_reference  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plugin", action="store_true", help="Keep hut-peft's vLLM plugin on.")
    args = parser.parse_args()
    os.environ["HUT_PEFT_VLLM"] = "1" if args.plugin else "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from hut_peft.lab.models import save_tiny_llama

    root = Path(tempfile.mkdtemp(prefix="vllm-slots-"))
    base = Path(save_tiny_llama(root / "base", hidden_size=128))
    for k in (1, 2):
        adapted_model(base, "lora", seed=20 + k, target_modules=["q_proj", "v_proj", "down_proj"], r=8,
                      lora_alpha=16).save_pretrained(root / f"lora{k}")
    llm = LLM(model=str(base), enable_lora=True, dtype="float32", max_model_len=128, max_loras=2, max_lora_rank=8,
              max_num_seqs=16)
    loras = {name: LoRARequest(name, k + 1, str(root / name)) for k, name in enumerate(["lora1", "lora2"])}
    jobs = [(None, 0), ("lora1", 1), ("lora2", 2), (None, 3), (None, 1)]
    outs = llm.generate([{"prompt_token_ids": PROMPTS[i]} for _, i in jobs],
                        SamplingParams(temperature=0, max_tokens=8, ignore_eos=True),
                        lora_request=[None if name is None else loras[name] for name, _ in jobs], use_tqdm=False)
    for (name, i), out in zip(jobs, outs):
        expected = greedy_reference(base, None if name is None else root / name, PROMPTS[i], 8)[0]
        same = list(out.outputs[0].token_ids) == expected
        print(f"{name or 'base model':10s} prompt {i}: {'equal' if same else 'DIFFERENT'} to transformers", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
