"""Where each role (query, value, attention output, FFN ...) lives in each architecture, so a method needs no
per-model flags. One table; add an architecture with one entry.

A role is a regex matched against the end of a module's full name; :func:`resolve_targets` turns the matches
into the shortest module-name suffixes that select exactly them, which is what peft's ``target_modules``
list expects (suffix match) and what survives wrapping (``bert.``, ``base_model.model.`` prefixes).
"""

from __future__ import annotations

import re
from typing import Optional

from torch import nn

ROLE_NAMES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out", "attn_fused")

# model_type -> role -> regex fragment matched against the end of a module's full name
ROLES: dict[str, dict[str, str]] = {
    "bert": {
        "query": r"attention\.self\.query", "key": r"attention\.self\.key", "value": r"attention\.self\.value",
        "attn_out": r"attention\.output\.dense", "ffn_in": r"intermediate\.dense",
        "ffn_out": r"layer\.\d+\.output\.dense",
    },
    # GPT-2 fuses q, k and v into one Conv1D c_attn (d -> 3d, blocks in the order q | k | v): the query, key
    # and value roles resolve to it; methods that can adapt one block (HUT's fused_slices) use FUSED_QKV.
    "gpt2": {
        "attn_fused": r"attn\.c_attn", "query": r"attn\.c_attn", "key": r"attn\.c_attn", "value": r"attn\.c_attn",
        "attn_out": r"attn\.c_proj", "ffn_in": r"mlp\.c_fc", "ffn_out": r"mlp\.c_proj",
    },
    "llama": {
        "query": r"self_attn\.q_proj", "key": r"self_attn\.k_proj", "value": r"self_attn\.v_proj",
        "attn_out": r"self_attn\.o_proj", "ffn_in": r"mlp\.(?:up_proj|gate_proj)", "ffn_out": r"mlp\.down_proj",
    },
}
ROLES["roberta"] = ROLES["xlm-roberta"] = ROLES["bert"]
ROLES["mistral"] = ROLES["qwen2"] = ROLES["llama"]

# model_type -> (fused projection's suffix, order of its equal output blocks)
FUSED_QKV: dict[str, tuple[str, tuple[str, ...]]] = {"gpt2": ("c_attn", ("query", "key", "value"))}

HEAD_NAMES = ("classifier", "score", "qa_outputs")


def model_type(model: nn.Module) -> str:
    """``config.model_type`` of a transformers model (or of the model inside a peft wrapper).

    Raises:
        ValueError: The architecture has no entry in :data:`ROLES`.
    """
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in ROLES:
        raise ValueError(
            f"No target-module table for model_type {kind!r} ({type(model).__name__}; known: "
            f"{', '.join(sorted(ROLES))}). Pass the method's target_modules explicitly, or add the architecture "
            "to hut_peft.lab.methods.arch.ROLES."
        )
    return kind


def describe(model: nn.Module) -> str:
    """``"LlamaForCausalLM (model_type 'llama')"``: how errors name an architecture."""
    kind = getattr(getattr(model, "config", None), "model_type", None)
    return f"{type(model).__name__} (model_type {kind!r})"


def role_modules(model: nn.Module, role: str) -> list[str]:
    """Full names of the modules that play ``role`` in this model, in model order.

    Raises:
        ValueError: Unknown role, a role this architecture does not have, or no module matches.
    """
    if role not in ROLE_NAMES:
        raise ValueError(f"Unknown role {role!r}; roles are: {', '.join(ROLE_NAMES)}.")
    kind = model_type(model)
    roles = ROLES[kind]
    if role not in roles:
        raise ValueError(
            f"{describe(model)} has no {role!r} projection (only GPT-2 style models fuse q, k and v into one); "
            f"use one of: {', '.join(roles)}."
        )
    pattern = re.compile(rf"(?:^|.*\.){roles[role]}")
    names = [name for name, _ in model.named_modules() if pattern.fullmatch(name)]
    if not names:
        raise ValueError(f"No module plays the role {role!r} in this {describe(model)}.")
    return names


def resolve_targets(model: nn.Module, role: str) -> list[str]:
    """Module-name suffixes that select exactly the modules playing ``role`` (peft ``target_modules`` style).

    Each suffix is the shortest one (not starting at a layer index) that no other module's name ends with:
    BERT ``query`` → ``["query"]``, ``attn_out`` → ``["attention.output.dense"]``, ``ffn_out`` →
    ``["layer.0.output.dense", ...]`` (``output.dense`` alone would also match the attention output); GPT-2
    ``attn_out`` → ``["attn.c_proj"]``, ``ffn_out`` → ``["mlp.c_proj"]``, ``query`` → ``["c_attn"]`` (fused);
    Llama ``ffn_in`` → ``["gate_proj", "up_proj"]``.

    Args:
        model: A transformers model, bare or wrapped (peft), of a known architecture.
        role: One of ``query, key, value, attn_out, ffn_in, ffn_out, attn_fused``.

    Raises:
        ValueError: Unknown architecture or role, or a role the architecture does not have.
    """
    names = role_modules(model, role)
    chosen = set(names)
    others = [n for n, _ in model.named_modules() if n not in chosen]
    suffixes: list[str] = []
    for name in names:
        parts = name.split(".")
        suffix = name
        for i in range(len(parts) - 1, -1, -1):
            if parts[i].isdigit():
                continue
            candidate = ".".join(parts[i:])
            if not any(o == candidate or o.endswith("." + candidate) for o in others):
                suffix = candidate
                break
        if suffix not in suffixes:
            suffixes.append(suffix)
    return suffixes


def targets_for(model: nn.Module, roles: list[str] | tuple[str, ...]) -> list[str]:
    """The union of :func:`resolve_targets` over several roles, without duplicates (GPT-2's q and v)."""
    out: list[str] = []
    for role in roles:
        out += [s for s in resolve_targets(model, role) if s not in out]
    return out


def fused_mask(model: nn.Module, roles: list[str] | tuple[str, ...]) -> Optional[tuple[str, list[bool]]]:
    """For a fused q/k/v architecture: (suffix, which blocks ``roles`` select); None when there is nothing to
    slice (no fused projection, or all of q, k and v wanted)."""
    kind = model_type(model)
    if kind not in FUSED_QKV:
        return None
    suffix, order = FUSED_QKV[kind]
    mask = [block in roles for block in order]
    if not any(mask) or all(mask) or "attn_fused" in roles:
        return None
    return suffix, mask


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks (``encoder.layer``, ``transformer.h``, ``model.layers``).

    Raises:
        ValueError: No ``nn.ModuleList`` named ``layer``, ``h`` or ``layers`` exists.
    """
    candidates = [m for n, m in model.named_modules()
                  if isinstance(m, nn.ModuleList) and n.split(".")[-1] in ("layer", "h", "layers")]
    if not candidates:
        raise ValueError(f"Cannot find the transformer blocks of this {describe(model)}.")
    return max(candidates, key=len)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of a task head (``classifier``, ``score``, ``qa_outputs``), trained by every method."""
    return [p for n, p in model.named_parameters() if n.split(".")[0] in HEAD_NAMES]


def freeze_except_head(model: nn.Module) -> None:
    """Freeze every parameter, then let the task head (if any) train: the start of every hand-written method."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head_parameters(model):
        p.requires_grad_(True)


def infer_task_type(model: nn.Module) -> Optional[str]:
    """peft's task type from the transformers head class (``...ForSequenceClassification`` → ``SEQ_CLS``);
    None for a bare model."""
    name = type(model).__name__
    for ending, task in (("ForSequenceClassification", "SEQ_CLS"), ("ForCausalLM", "CAUSAL_LM"),
                         ("LMHeadModel", "CAUSAL_LM"), ("ForTokenClassification", "TOKEN_CLS"),
                         ("ForQuestionAnswering", "QUESTION_ANS")):
        if name.endswith(ending):
            return task
    return None
