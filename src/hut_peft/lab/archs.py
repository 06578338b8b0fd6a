"""Published model shapes (the hub's ``config.json`` values), built without weights.

The FLOPs and parameter counts of the paper's models (RoBERTa-large for GLUE, GPT-2 medium for E2E) depend
only on their shapes, so ``hut-peft flops`` builds them on the meta device: no download, no memory, and
``FlopCounterMode`` still counts every matmul from the shapes. ``bench`` builds a few random-weight layers of
the same shapes on the CPU (``layers=2``) to time a RoBERTa-large-sized block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn


@dataclass(frozen=True)
class Arch:
    """A published configuration: the transformers family and the config fields that differ from its defaults."""

    family: str  # "roberta", "bert", "gpt2" or "llama"
    source: str  # the hub id whose config.json the numbers come from
    config: dict[str, Any] = field(default_factory=dict)


ARCHS: dict[str, Arch] = {
    "roberta-base": Arch("roberta", "FacebookAI/roberta-base", dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=50265,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)),
    "roberta-large": Arch("roberta", "FacebookAI/roberta-large", dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, vocab_size=50265,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)),
    "bert-base": Arch("bert", "google-bert/bert-base-uncased", dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=30522)),
    "minilm-l6": Arch("bert", "sentence-transformers/all-MiniLM-L6-v2", dict(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, vocab_size=30522)),
    "gpt2": Arch("gpt2", "openai-community/gpt2", dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257)),
    "gpt2-medium": Arch("gpt2", "openai-community/gpt2-medium",
                        dict(n_embd=1024, n_layer=24, n_head=16, vocab_size=50257)),
    "smollm2-135m": Arch("llama", "HuggingFaceTB/SmolLM2-135M", dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
        tie_word_embeddings=True)),
    "llama-3-8b": Arch("llama", "meta-llama/Meta-Llama-3-8B", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        vocab_size=128256, max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
        tie_word_embeddings=False)),
}


def _classes(family: str) -> tuple[type, type]:
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2Model,
        LlamaConfig,
        LlamaModel,
        RobertaConfig,
        RobertaModel,
    )

    return {"roberta": (RobertaConfig, RobertaModel), "bert": (BertConfig, BertModel),
            "gpt2": (GPT2Config, GPT2Model), "llama": (LlamaConfig, LlamaModel)}[family]


def arch_config(name: str, layers: Optional[int] = None) -> Any:
    """The transformers config of a published shape, optionally cut to ``layers`` blocks.

    Raises:
        ValueError: Unknown name (the message lists the known ones), or ``layers`` < 1.
    """
    if name not in ARCHS:
        raise ValueError(f"Unknown --arch {name!r}; known: {', '.join(ARCHS)} (or pass --model PATH).")
    arch = ARCHS[name]
    kwargs = dict(arch.config)
    if layers is not None:
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}.")
        kwargs["n_layer" if arch.family == "gpt2" else "num_hidden_layers"] = layers
    return _classes(arch.family)[0](**kwargs)


def build_arch(name: str, device: str | torch.device = "meta", layers: Optional[int] = None) -> nn.Module:
    """The bare model (no task head) of a published shape: meta tensors by default, random weights on a real device.

    Raises:
        ValueError: As :func:`arch_config`.
    """
    config = arch_config(name, layers)
    with torch.device(device):
        return _classes(ARCHS[name].family)[1](config)


def hidden_size(config: Any) -> int:
    """The model width, whichever name the family gives it."""
    return int(getattr(config, "hidden_size", None) or config.n_embd)
