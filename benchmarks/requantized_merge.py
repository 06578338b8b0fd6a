"""What merging HUT into a 4-bit or 8-bit base costs: the re-quantisation error of
``hut_peft.hut.quantized_merge.merge_and_unload_requantized``, against what the adapter itself changes.

For each of 4-bit NF4 and 8-bit, on the same quantised base: HUT on q and v (the bench's ``paper-glue`` setting,
r = 8) moved off the identity by N(0, 0.02²) noise on every trainable parameter (the bench's ``_perturb``; a
stand-in for a trained adapter), then merged and re-quantised. Reported: the per-layer relative weight error
``max |dequant(requant(W')) − W'| / max |W'|`` (median and max over the adapted matrices), and on the bench's
batch the max |Δ| of the last hidden state between the merged model and the unmerged quantised one, beside
the adapter's own effect (unmerged against the bare quantised base).

Run: ``HF_HUB_OFFLINE=1 python benchmarks/requantized_merge.py --model smollm2`` (or minilm; the tiny random
models are too narrow: bitsandbytes' CPU inference kernel packs 4-bit weights in blocks of 64 inputs).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch

from hut_peft.hut.quantized_merge import merge_and_unload_requantized
from hut_peft.lab.bench.run import _perturb, _prepare, load_model_quantized
from hut_peft.lab.bench.timing import SEED


def measure(name: str, bits: int) -> dict:
    base, batch, label = load_model_quantized(name, torch.device("cpu"), bits=bits)
    base.eval()
    model = _prepare("hut", base).eval()
    _perturb(model, SEED + 1)
    with torch.no_grad():
        bare = base(**batch).last_hidden_state
        unmerged = model(**batch).last_hidden_state
    merged, errors = merge_and_unload_requantized(copy.deepcopy(model))
    with torch.no_grad():
        after = merged.eval()(**batch).last_hidden_state
    values = list(errors.values())
    return {"model": label, "adapted_matrices": len(values),
            "relative_weight_error_median": statistics.median(values), "relative_weight_error_max": max(values),
            "adapter_effect_max_abs": (unmerged - bare).abs().max().item(),
            "merge_drift_max_abs": (after - unmerged).abs().max().item(),
            "hidden_state_max_abs": unmerged.abs().max().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", choices=["smollm2", "minilm"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps({f"{bits}bit": measure(args.model, bits) for bits in (4, 8)}, indent=2))


if __name__ == "__main__":
    main()
