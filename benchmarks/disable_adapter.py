"""What reaching the base model costs with K HUT adapters loaded, by the three ways peft users have (issue 22, item 6).

    python benchmarks/disable_adapter.py --sizes 1,64,1024

On a tiny random Llama (2 layers, q and v adapted; a small forward, so any per-adapter overhead shows), per K:
a forward with the active adapter; the same inside ``with model.disable_adapter():`` (entry and exit counted);
between ``model.base_model.disable_adapter_layers()`` and ``enable_adapter_layers()``; and with
``adapter_names=["__base__"] * rows``. Medians of interleaved repetitions, ratios to the adapter forward, one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from peft import get_peft_model

from hut_peft import HUTConfig
from hut_peft.lab.bench.timing import interleaved_medians

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_llama  # noqa: E402


def measure(k: int, reps: int) -> dict[str, float]:
    cfg = dict(r=2, target_modules=["q_proj", "v_proj"], init="perturbed")
    model = get_peft_model(tiny_llama(), HUTConfig(**cfg), adapter_name="a0").eval()
    for i in range(1, k):
        model.add_adapter(f"a{i}", HUTConfig(**cfg))
    x = torch.randint(0, 100, (4, 16))

    def context() -> None:
        with model.disable_adapter():
            model(input_ids=x)

    def layers() -> None:
        model.base_model.disable_adapter_layers()
        model(input_ids=x)
        model.base_model.enable_adapter_layers()

    with torch.no_grad():
        return interleaved_medians({"adapter": lambda: model(input_ids=x), "disable_adapter()": context,
                                    "disable/enable_adapter_layers()": layers,
                                    "__base__ rows": lambda: model(input_ids=x, adapter_names=["__base__"] * 4)},
                                   reps, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,64,1024", help="Numbers of adapters loaded.")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| K | adapter forward (ms) | " + " | ".join(("disable_adapter()", "disable/enable_adapter_layers()",
                                                        "__base__ rows")) + " |")
    print("|---|---|---|---|---|")
    for k in (int(s) for s in args.sizes.split(",")):
        t = measure(k, args.reps)
        cells = [f"{t[m] * 1e3:.2f} ms ({t[m] / t['adapter']:.2f}×)" for m in list(t)[1:]]
        print(f"| {k} | {t['adapter'] * 1e3:.2f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
