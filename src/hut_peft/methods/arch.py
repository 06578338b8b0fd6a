"""Where each role (query, value, attention output, FFN ...) lives in each architecture, so a method
needs no per-model flags. One table; add an architecture with one entry."""

from __future__ import annotations

import re

from torch import nn

# model_type -> role -> regex fragment matched against the end of a module's full name
ROLES: dict[str, dict[str, str]] = {
    "bert": {
        "query": r"attention\.self\.query", "key": r"attention\.self\.key", "value": r"attention\.self\.value",
        "attn_out": r"attention\.output\.dense", "ffn_in": r"intermediate\.dense",
        "ffn_out": r"layer\.\d+\.output\.dense", "ffn_norm": r"layer\.\d+\.output\.LayerNorm",
    },
    "gpt2": {
        "attn_fused": r"attn\.c_attn", "query": r"attn\.c_attn", "value": r"attn\.c_attn", "key": r"attn\.c_attn",
        "attn_out": r"attn\.c_proj", "ffn_in": r"mlp\.c_fc", "ffn_out": r"mlp\.c_proj", "ffn_norm": r"ln_2",
    },
    "llama": {
        "query": r"self_attn\.q_proj", "key": r"self_attn\.k_proj", "value": r"self_attn\.v_proj",
        "attn_out": r"self_attn\.o_proj", "ffn_in": r"mlp\.(?:up_proj|gate_proj)", "ffn_out": r"mlp\.down_proj",
        "ffn_norm": r"post_attention_layernorm",
    },
}
ROLES["roberta"] = ROLES["bert"]
ROLES["xlm-roberta"] = ROLES["bert"]
ROLES["mistral"] = ROLES["qwen2"] = ROLES["llama"]
# The fused q/k/v projection: which blocks are q, k, v.
FUSED_QKV = {"gpt2": ("c_attn", 3)}


def model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in ROLES:
        raise ValueError(
            f"No target-module table for model_type {kind!r} (known: {', '.join(sorted(ROLES))}). Pass the "
            "method's target_modules explicitly, or add the architecture to hut_peft.methods.arch.ROLES."
        )
    return kind


def resolve_targets(model: nn.Module, role: str) -> list[str]:
    """Full names of the modules that play ``role`` in this model (e.g. every layer's query projection)."""
    roles = ROLES[model_type(model)]
    if role not in roles:
        raise ValueError(f"Role {role!r} unknown for {model_type(model)}; known: {', '.join(roles)}.")
    pattern = re.compile(rf"(?:^|.*\.){roles[role]}")
    names = [name for name, _ in model.named_modules() if pattern.fullmatch(name)]
    if not names:
        raise ValueError(f"No module plays the role {role!r} in this {type(model).__name__}.")
    return names


def target_regex(model: nn.Module, roles: list[str]) -> str:
    """A peft ``target_modules`` regex (full match) for several roles."""
    table = ROLES[model_type(model)]
    return r"(?:.*\.)?(?:" + "|".join(sorted({table[r] for r in roles})) + ")"


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks (encoder.layer, transformer.h, model.layers)."""
    candidates = [m for n, m in model.named_modules()
                  if isinstance(m, nn.ModuleList) and n.split(".")[-1] in ("layer", "h", "layers")]
    if not candidates:
        raise ValueError(f"Cannot find the transformer blocks of this {type(model).__name__}.")
    return max(candidates, key=len)


HEAD_NAMES = ("classifier", "score", "qa_outputs")


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of a task head (classification / regression), trained by every method."""
    return [p for n, p in model.named_parameters() if n.split(".")[0] in HEAD_NAMES]
