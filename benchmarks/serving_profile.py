"""Where the time of a K-adapter mixed batch goes, and what switching tenants by merging costs (docs/serving.md).

    PYTHONPATH=src python benchmarks/serving_profile.py --k 1024 --reps 4

SmolLM2-135M with K HUT adapters (r = 8, q and v, no shift; copies of one perturbed adapter with fresh noise, made by the
bench's ``clone_adapter``), a batch of K rows × 4 tokens: the forward with one adapter for all rows ("single")
and with a different adapter per row ("mixed"), interleaved, one thread. Prints each round's times and ratio,
the median ratio, the load average, cProfile's top functions for one call of each, and the seconds of one
``merge_adapter`` + ``unmerge_adapter`` (the cost of switching a merged model from one tenant to another).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
import warnings

import torch
from peft import get_peft_model

from hut_peft import HUTConfig
from hut_peft.lab.bench.serving import _adapter_params, _perturb_, clone_adapter, load_decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=1024, help="Adapters, and rows of the batch (default 1024).")
    parser.add_argument("--reps", type=int, default=4, help="Interleaved rounds (default 4).")
    parser.add_argument("--tokens", type=int, default=4, help="Tokens per row (default 4).")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    base, label = load_decoder("smollm2", torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    # shift=False: Llama attention has no bias to merge a shift into, and the merge timing below needs a merge
    cfg = HUTConfig(r=8, target_modules=["q_proj", "v_proj"], shift=False)
    model = get_peft_model(base, cfg, adapter_name="c0000")
    _perturb_(_adapter_params(model, "c0000"), gen)
    for i in range(1, args.k):
        clone_adapter(model, "c0000", f"c{i:04d}", gen)
    model.eval()
    ids = torch.randint(1000, base.config.vocab_size, (args.k, args.tokens), generator=gen)
    names = [f"c{i:04d}" for i in range(args.k)]
    fns = {"single": lambda: model(input_ids=ids, logits_to_keep=1),
           "mixed": lambda: model(input_ids=ids, adapter_names=names, logits_to_keep=1)}
    times: dict[str, list[float]] = {"single": [], "mixed": []}
    with torch.no_grad():
        for fn in fns.values():  # warm-up; the first mixed call builds the bank
            fn()
        for name, fn in fns.items():
            profile = cProfile.Profile()
            profile.enable()
            fn()
            profile.disable()
            print(f"--- {name}: cProfile, top 6 by own time")
            pstats.Stats(profile).sort_stats("tottime").print_stats(6)
        for _ in range(args.reps):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    rounds = [m / s for s, m in zip(times["single"], times["mixed"])]
    print(f"{label}, K = {args.k} rows × {args.tokens} tokens, forward: single {[round(t, 2) for t in times['single']]} "
          f"s, mixed {[round(t, 2) for t in times['mixed']]} s; per-round mixed/single {[round(r, 3) for r in rounds]}; "
          f"median ratio {statistics.median(times['mixed']) / statistics.median(times['single']):.3f}; "
          f"load average {os.getloadavg()}")
    model.base_model.set_adapter("c0000")
    switch = []
    for _ in range(5):
        start = time.perf_counter()
        model.merge_adapter()
        model.unmerge_adapter()
        switch.append(time.perf_counter() - start)
    print(f"merge_adapter + unmerge_adapter of one adapter: {statistics.median(switch):.3f} s (median of 5)")


if __name__ == "__main__":
    main()
