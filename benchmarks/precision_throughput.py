"""Training tokens/s of the GLUE recipe's step: fp32 against bf16 autocast, random against length-grouped batches.

One process, one model per method, the four settings interleaved over repetitions (medians, ratios measured in
the same run), real MRPC pairs through the embedding head (both sentences encoded, as the recipe does):

    python benchmarks/precision_throughput.py --methods hut,lora,full --steps 20 --reps 3 --threads 2

Tokens are real (unpadded) tokens; the padded ones are what length grouping saves.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from transformers import AutoModel, AutoTokenizer
from transformers.trainer_pt_utils import LengthGroupedSampler

from hut_peft.lab.data.glue import load_glue
from hut_peft.lab.heads import EmbeddingClassifier, PairCollator
from hut_peft.lab.methods import apply_method
from hut_peft.lab.models import resolve_model


def batches(tokenizer, pairs: list[dict], batch: int, grouped: bool, steps: int, seed: int) -> list[dict]:
    lengths = [len(p["input_ids"]) + len(p["input_ids_b"]) for p in pairs]
    gen = torch.Generator().manual_seed(seed)
    order = (list(LengthGroupedSampler(batch, lengths=lengths, generator=gen)) if grouped
             else torch.randperm(len(pairs), generator=gen).tolist())
    collate = PairCollator(tokenizer)
    return [collate([pairs[i] for i in order[k * batch:(k + 1) * batch]]) for k in range(steps)]


def tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum() + batch["attention_mask_b"].sum())


def time_steps(model, optimizer, data: list[dict], precision: str) -> float:
    """Seconds per token over the given batches (forward, backward, optimizer step)."""
    context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    start = time.perf_counter()
    for batch in data:
        with context:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / sum(tokens(b) for b in data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="hut,lora,full")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    src = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(src.path)
    rows = load_glue("mrpc", args.data_dir, split="train")
    pairs = []
    for row in rows:
        a, b = tokenizer(row["sentence1"], truncation=True, max_length=128), tokenizer(row["sentence2"], truncation=True,
                                                                                      max_length=128)
        pairs.append({**a, **{k + "_b": v for k, v in b.items()}, "label": row["label"]})
    random.Random(0).shuffle(pairs)
    settings = [(p, g) for p in ("fp32", "bf16") for g in (False, True)]
    data = {g: batches(tokenizer, pairs, args.batch_size, g, args.steps, seed=0) for g in (False, True)}
    padded = {g: sum(b["attention_mask"].numel() + b["attention_mask_b"].numel() for b in data[g]) for g in data}
    print(f"torch {torch.__version__}, {args.threads} threads, MRPC pairs, batch {args.batch_size}, {args.steps} steps "
          f"per timing, {args.reps} interleaved reps; padded/real tokens: random "
          f"{padded[False] / sum(map(tokens, data[False])):.2f}, grouped {padded[True] / sum(map(tokens, data[True])):.2f}")
    print("| method | fp32 random | fp32 grouped | bf16 random | bf16 grouped | bf16 grouped / fp32 random |")
    print("|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        model = apply_method(method, EmbeddingClassifier(AutoModel.from_pretrained(src.path), 2, pair=True),
                             task_type="SEQ_CLS")
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        time_steps(model, optimizer, data[False][:3], "bf16")  # warm-up both paths
        time_steps(model, optimizer, data[False][:3], "fp32")
        per_token: dict[tuple[str, bool], list[float]] = {s: [] for s in settings}
        for _ in range(args.reps):
            for precision, grouped in settings:
                per_token[(precision, grouped)].append(time_steps(model, optimizer, data[grouped], precision))
        rate = {s: 1.0 / statistics.median(v) for s, v in per_token.items()}
        cells = " | ".join(f"{rate[s]:,.0f}" for s in settings)
        print(f"| {method} | {cells} | {rate[('bf16', True)] / rate[('fp32', False)]:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
