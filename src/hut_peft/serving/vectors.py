"""A saved HUT adapter folder as the per-layer vectors a serving engine gathers, with no engine imported.

On a layer, one HUT adapter is three vectors once its matrices are averaged (DESIGN §1.7)::

    h = (x ⊙ a) W0ᵀ ⊙ c + s        a = m_A (d,),   c = γ ⊙ m_B (k,),   s = γ ⊙ b0 + β − c ⊙ b0 (k,)

An engine stores ``a`` and ``c`` per adapter slot and finishes ``s`` where it knows which bias its layer adds
(``shift``). This module reads and checks the folder (``read_adapter``), turns each module's four tensors into
``(a, c, γ, β)`` (``module_vectors``), and packs them into the two tensors vLLM moves around as an adapter's
"LoRA A / B" (``encode`` / ``decode``), so vLLM's own packing of fused layers, its adapter LRU and its
tensor-parallel slicing carry HUT adapters unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .folders import CONFIG_NAME, WEIGHTS_NAME

KINDS = ("hut_A", "hut_B", "hut_gamma", "hut_beta")
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class ModuleVectors:
    """One adapted layer's vectors, in fp32: ``a = m_A`` (d,), ``c = γ ⊙ m_B`` (k,), ``γ`` (k,), ``β`` (k,)."""

    a: torch.Tensor
    c: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor


def read_adapter(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """The config and the tensors of a HUT adapter folder, grouped by module: ``{module: {kind: tensor}}``.

    Module names are peft's with ``base_model.model.`` removed (``model.layers.0.self_attn.q_proj``).

    Raises:
        FileNotFoundError: no ``adapter_model.safetensors`` in the folder.
        ValueError: not a HUT adapter, a setting a serving engine cannot apply, or a tensor that is not HUT's.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    with open(folder / CONFIG_NAME) as f:
        config = json.load(f)
    if str(config.get("peft_type", "")).upper() != "HUT":
        raise ValueError(f"{folder}: peft_type is {config.get('peft_type')!r}, not 'HUT'")
    if config.get("fused_slices"):
        raise ValueError(f"HUT adapter {folder}: fused_slices={config['fused_slices']} adapts blocks of a fused layer "
                         "written as one module (GPT-2's c_attn); serve it with hut-peft in Python, or train it on "
                         "the separate q_proj/k_proj/v_proj of a model vLLM serves")
    if config.get("modules_to_save"):
        raise ValueError(f"HUT adapter {folder}: modules_to_save={config['modules_to_save']} (a trained head per "
                         "adapter) cannot be served as an adapter; merge it into a model folder instead")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"HUT adapter {folder}: no {WEIGHTS_NAME} (save it with save_pretrained)")
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(weights).items():
        module, _, kind = key.removeprefix(PEFT_PREFIX).rpartition(".")
        if kind not in KINDS:
            raise ValueError(f"HUT adapter {folder}: tensor {key} is not a HUT tensor (expected names ending in "
                             f"{', '.join(KINDS)})")
        modules.setdefault(module, {})[kind] = tensor
    if not modules:
        raise ValueError(f"HUT adapter {folder}: {WEIGHTS_NAME} holds no tensors")
    return config, modules


def module_vectors(tensors: dict[str, torch.Tensor], module: str, in_features: int, out_features: int,
                   shift: bool = True, where: str = "") -> ModuleVectors:
    """``(a, c, γ, β)`` of one module from its saved tensors, after checking each against the layer's sizes.

    Args:
        tensors: ``{kind: tensor}`` as ``read_adapter`` groups them.
        module: the module's name, for messages.
        in_features, out_features: the layer's full (unsharded) sizes ``d`` and ``k``.
        shift: whether the adapter trained ``β`` (``HUTConfig.shift``); without it ``β`` may be absent (zeros).
        where: what to name in messages (the adapter folder).

    Raises:
        ValueError: a tensor missing, or a shape that does not fit the layer; the message names both.
    """
    r = tensors["hut_A"].shape[-1] if "hut_A" in tensors and tensors["hut_A"].ndim == 2 else None
    expected = {"hut_A": (in_features, r), "hut_B": (r, out_features), "hut_gamma": (out_features,),
                "hut_beta": (out_features,)}
    for kind, shape in expected.items():
        if kind not in tensors:
            if kind == "hut_beta" and not shift:
                continue
            raise ValueError(f"HUT adapter {where}: {module}.{kind} is missing")
        if tuple(tensors[kind].shape) != shape:
            shown = tuple("r" if n is None else n for n in shape)
            raise ValueError(f"HUT adapter {where}: {module}.{kind} has shape {tuple(tensors[kind].shape)}, expected "
                             f"{shown} for {module} of this model (in {in_features}, out {out_features}): an adapter "
                             "trained for another base model?")
    m_a = tensors["hut_A"].float().mean(dim=-1)
    m_b = tensors["hut_B"].float().mean(dim=-2)
    gamma = tensors["hut_gamma"].float()
    beta = tensors["hut_beta"].float() if "hut_beta" in tensors else torch.zeros_like(gamma)
    return ModuleVectors(a=m_a, c=gamma * m_b, gamma=gamma, beta=beta)


def encode(vectors: ModuleVectors, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The two tensors vLLM carries as an adapter's LoRA A and B: ``(1, d)`` = ``a`` and ``(k, 3)`` = ``[c γ β]``.

    vLLM slices LoRA A by columns and LoRA B by rows for tensor parallelism, so ``a`` follows a row-parallel
    layer's input shards and ``[c γ β]`` a column-parallel layer's output shards. A real LoRA always has
    ``A.shape[0] == B.shape[1]`` (its rank); this pair has 1 and 3, which is how ``is_hut_payload`` tells them apart.
    """
    a = vectors.a.reshape(1, -1)
    b = torch.stack([vectors.c, vectors.gamma, vectors.beta], dim=1)
    return a.to(dtype).contiguous(), b.to(dtype).contiguous()


def is_hut_payload(lora_a: Optional[torch.Tensor], lora_b: Optional[torch.Tensor]) -> bool:
    """Whether a (LoRA A, LoRA B) pair is ``encode``'s HUT vectors rather than a rank-r LoRA."""
    return (lora_a is not None and lora_b is not None and lora_a.ndim == 2 and lora_b.ndim == 2
            and lora_a.shape[0] == 1 and lora_b.shape[1] == 3)


def decode(lora_a: torch.Tensor, lora_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, c, γ, β)`` back from ``encode``'s pair (possibly sliced for tensor parallelism)."""
    return lora_a[0], lora_b[:, 0], lora_b[:, 1], lora_b[:, 2]


def shift(c: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, bias: Optional[torch.Tensor],
          bias_in_output: bool) -> torch.Tensor:
    """The shift ``s`` to add after the output scale, so that the layer's final output is ``γ ⊙ (... + b0) + β``.

    Args:
        bias: the base layer's bias ``b0`` (this shard's), or None.
        bias_in_output: True when ``b0`` is already in the scaled output (``(x W0ᵀ + b0) ⊙ c``), False when the
            caller adds ``b0`` afterwards (vLLM's ``skip_bias_add``).
    """
    if bias is None:
        return beta.clone()
    b0 = bias.to(gamma.dtype)
    return gamma * b0 + beta - (c * b0 if bias_in_output else b0)
