"""Classification heads for the GLUE recipe: the usual ``[CLS]`` cross-encoder, or a sentence-embedding head.

Sentence-embedding checkpoints (sentence-transformers models such as the embedded all-MiniLM-L6-v2) were trained
to embed one sentence at a time with mean pooling; their ``[CLS]`` output over a packed pair was never trained.
The embedding head uses them that way, as sentence-transformers' own classification objective does (SBERT,
Reimers & Gurevych 2019): each sentence is encoded alone and mean-pooled, and a linear classifier reads
``(|u - v|, u ⊙ v)`` for a pair, ``u`` for a single sentence. The pair features are the symmetric half of
SBERT's and InferSent's ``(u, v, |u - v|, u ⊙ v)``: they describe how the sentences relate (``Σ u ⊙ v`` is
their dot product), not what they are about; on RTE from 512 examples they did better than all four (59.2%
against 56.0%, one seed; docs/glue.md). The encoder is the transformers model inside, so every method of the
registry (HUT included) adapts it and merges the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

HEADS = ("auto", "cls", "embedding")
SECOND = "_b"  # suffix of the second sentence's inputs: input_ids_b, attention_mask_b, token_type_ids_b


def is_sentence_embedding_checkpoint(path: str | os.PathLike) -> bool:
    """True when a local checkpoint folder is a sentence-transformers model with mean pooling."""
    folder = Path(path)
    modules = folder / "modules.json"
    if not modules.is_file():
        return False
    for module in json.loads(modules.read_text()):
        if module.get("type", "").endswith("models.Pooling"):
            config = folder / module.get("path", "") / "config.json"
            return config.is_file() and bool(json.loads(config.read_text()).get("pooling_mode_mean_tokens"))
    return False


def resolve_head(head: str, model_path: str | os.PathLike) -> str:
    """``auto`` → ``embedding`` for a sentence-embedding checkpoint folder, else ``cls`` (hub ids: ``cls``)."""
    if head not in HEADS:
        raise ValueError(f"--head must be one of {', '.join(HEADS)}, got {head!r}.")
    if head != "auto":
        return head
    return "embedding" if Path(model_path).is_dir() and is_sentence_embedding_checkpoint(model_path) else "cls"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where ``mask`` is 1 (sentence-transformers' ``pooling_mode_mean_tokens``)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class EmbeddingClassifier(nn.Module):
    """A sentence-embedding encoder and a linear head on ``(|u - v|, u ⊙ v)`` (pairs) or ``u`` (single).

    ``config`` is the encoder's (with ``num_labels`` and ``problem_type`` set), so target tables, peft and the
    Trainer see the architecture they know; the head is called ``classifier``, which peft's ``SEQ_CLS`` trains.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pair: bool) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # it reads [CLS], which this head does not use; unused weights upset DDP
        self.encoder = encoder
        self.config = encoder.config
        self.config.num_labels = num_labels
        self.config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
        self.pair = pair
        self.classifier = nn.Linear(self.config.hidden_size * (2 if pair else 1), num_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
        input_ids_b: Optional[torch.Tensor] = None,
        attention_mask_b: Optional[torch.Tensor] = None,
        token_type_ids_b: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        **unused: Any,  # peft and the Trainer pass return_dict, output_attentions, ...
    ) -> SequenceClassifierOutput:
        u = self.embed(input_ids, attention_mask, token_type_ids)
        if self.pair:
            if input_ids_b is None or attention_mask_b is None:
                raise ValueError("A pair task needs input_ids_b and attention_mask_b (the second sentence).")
            v = self.embed(input_ids_b, attention_mask_b, token_type_ids_b)
            features = torch.cat([(u - v).abs(), u * v], dim=-1)
        else:
            features = u
        logits = self.classifier(features)
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class PairCollator:
    """Pads the first and the second sentence separately (each to its own longest), and stacks the labels."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        firsts = [{k: v for k, v in f.items() if k not in ("label", "length") and not k.endswith(SECOND)}
                  for f in features]
        batch = dict(self.tokenizer.pad(firsts, return_tensors="pt"))
        if any(k.endswith(SECOND) for k in features[0]):
            seconds = [{k.removesuffix(SECOND): v for k, v in f.items() if k.endswith(SECOND)} for f in features]
            batch.update({k + SECOND: v for k, v in self.tokenizer.pad(seconds, return_tensors="pt").items()})
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features])
        return batch
