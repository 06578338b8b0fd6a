"""What the frozen all-MiniLM-L6-v2 sentence embeddings already know about RTE (docs/glue.md's reference
numbers): the cosine of the two mean-pooled embeddings thresholded at the best split of the training subset,
and a logistic regression on ``(u, v, |u - v|, u ⊙ v)``, both fitted on the recipe's 512-example subset (seed 0)
and scored on the full dev set. No training of the encoder.

    .venv/bin/python benchmarks/rte_frozen_probe.py [--data-dir ../shared/data/glue]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

from hut_peft.lab.data.glue import load_glue
from hut_peft.lab.heads import mean_pool
from hut_peft.lab.models import DEFAULT_ENCODER, resolve_model


def embed(model, tokenizer, texts: list[str]) -> torch.Tensor:
    out = []
    for start in range(0, len(texts), 64):
        batch = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=128,
                          return_tensors="pt")
        with torch.no_grad():
            out.append(mean_pool(model(**batch).last_hidden_state, batch["attention_mask"]))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--max-train-samples", type=int, default=512)
    args = parser.parse_args()
    source = resolve_model(None, default=DEFAULT_ENCODER)
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    model = AutoModel.from_pretrained(source.path).eval()
    splits = {"train": load_glue("rte", args.data_dir, "train", max_samples=args.max_train_samples, seed=0),
              "dev": load_glue("rte", args.data_dir, "validation")}
    emb = {k: (embed(model, tokenizer, d["sentence1"]), embed(model, tokenizer, d["sentence2"]))
           for k, d in splits.items()}
    labels = {k: np.array(d["label"]) for k, d in splits.items()}  # 1 = not_entailment

    cos = {k: torch.nn.functional.cosine_similarity(u, v).numpy() for k, (u, v) in emb.items()}
    threshold = max(np.unique(cos["train"]), key=lambda t: ((cos["train"] < t) == labels["train"]).mean())
    print(f"majority class (dev): {max(np.bincount(labels['dev'])) / len(labels['dev']):.4f}")
    print(f"cosine < {threshold:.4f} means not_entailment: dev accuracy "
          f"{((cos['dev'] < threshold) == labels['dev']).mean():.4f}")
    features = {k: torch.cat([u, v, (u - v).abs(), u * v], -1).numpy() for k, (u, v) in emb.items()}
    for c in (0.01, 0.1, 1.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=5000).fit(features["train"], labels["train"])
        print(f"logistic regression on (u, v, |u-v|, u*v), C={c}: dev accuracy {clf.score(features['dev'], labels['dev']):.4f}")


if __name__ == "__main__":
    main()
