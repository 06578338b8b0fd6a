"""Builders for the methods that peft provides (LoRA, VeRA, FourierFT, prefix tuning, (IA)³, HiRA) and for HUT,
which is a peft tuner of this package. Nothing here re-implements a method: each builder picks the target
modules for the architecture (``roles``), fills the paper's defaults and calls ``peft.get_peft_model``.

Every builder takes ``roles=[...]`` (see :mod:`.arch`) or peft's own ``target_modules``, not both.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Optional

from torch import nn

from .arch import describe, fused_mask, model_type, targets_for


def peft_config(method: str, cls: type, **kwargs: Any) -> Any:
    """``cls(**kwargs)`` with unknown options reported as a ValueError naming the method and the options."""
    allowed = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"Method {method!r}: unknown option(s) {', '.join(unknown)} for peft's {cls.__name__}. Its options are: "
            f"{', '.join(sorted(allowed - {'peft_type', 'revision', 'base_model_name_or_path'}))}; plus 'roles'."
        )
    return cls(**kwargs)


def pop_targets(method: str, model: nn.Module, options: dict[str, Any], default_roles: Sequence[str]) -> Any:
    """Remove ``roles`` / ``target_modules`` from ``options``; return peft ``target_modules`` for this model.

    Raises:
        ValueError: both were given, or ``roles`` is not a list of role names.
    """
    roles = options.pop("roles", None)
    targets = options.pop("target_modules", None)
    if targets is not None:
        if roles is not None:
            raise ValueError(f"Method {method!r}: give roles or target_modules, not both.")
        return targets
    if roles is not None and (isinstance(roles, str) or not all(isinstance(r, str) for r in roles)):
        raise ValueError(f"Method {method!r}: roles must be a list of role names, got roles={roles!r}.")
    return targets_for(model, list(roles or default_roles))


def matched_layers(model: nn.Module, targets: Any) -> list[nn.Module]:
    """The modules peft would wrap for ``target_modules`` (suffix list or full-match regex)."""
    if isinstance(targets, str):
        probe = re.compile(targets)
        return [m for n, m in model.named_modules() if probe.fullmatch(n)]
    targets = list(targets)
    return [m for n, m in model.named_modules() if any(n == t or n.endswith("." + t) for t in targets)]


def conv1d_layout(model: nn.Module, targets: Any, options: dict[str, Any]) -> None:
    """Set ``fan_in_fan_out=True`` when the targets are transformers ``Conv1D`` (GPT-2), which store (in, out):
    peft would otherwise flip the flag itself with a warning."""
    from transformers.pytorch_utils import Conv1D

    layers = matched_layers(model, targets)
    if "fan_in_fan_out" not in options and layers and all(isinstance(m, Conv1D) for m in layers):
        options["fan_in_fan_out"] = True


def wrap(method: str, model: nn.Module, config: Any) -> nn.Module:
    """``get_peft_model`` with peft's 'target modules not found' turned into an error that names the method,
    the architecture and what would work."""
    from peft import PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise ValueError(
            f"Method {method!r}: this model is already a PeftModel; apply a method to the base model "
            "(model.get_base_model() or a freshly loaded one)."
        )
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        if any(text in str(err) for text in ("not found in the base model", "No modules were targeted",
                                             "past key values")):
            raise ValueError(f"Method {method!r} cannot apply to {describe(model)}: {err}") from err
        raise


# -------------------------------------------------------------------------------------------- builders
def build_lora(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """LoRA (Hu et al. 2022) from peft, on q and v with r = 8, alpha = 16 unless told otherwise. On GPT-2 it
    adapts the whole fused ``c_attn`` (peft has no per-block option)."""
    from peft import LoraConfig

    targets = pop_targets("lora", model, options, ["query", "value"])
    conv1d_layout(model, targets, options)
    options.setdefault("r", 8)
    options.setdefault("lora_alpha", 16)
    return wrap("lora", model, peft_config("lora", LoraConfig, target_modules=targets, task_type=task_type, **options))


def build_vera(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """VeRA (Kopiczko et al. 2023) from peft: frozen shared random A, B; trainable vectors d (r) and b (k)."""
    from peft import VeraConfig

    targets = pop_targets("vera", model, options, ["query", "value"])
    conv1d_layout(model, targets, options)
    options.setdefault("r", 256)
    return wrap("vera", model, peft_config("vera", VeraConfig, target_modules=targets, task_type=task_type, **options))


def build_fourierft(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """FourierFT (Gao et al. 2024) from peft: ``n_frequency`` trainable spectral coefficients per matrix.

    The default n_frequency is the paper's 1000, capped at the smallest targeted weight's size (tiny models)."""
    from peft import FourierFTConfig

    targets = pop_targets("fourierft", model, options, ["query", "value"])
    conv1d_layout(model, targets, options)
    if "n_frequency" not in options:
        sizes = [m.weight.numel() for m in matched_layers(model, targets) if hasattr(m, "weight")]
        options["n_frequency"] = min([1000] + sizes)
    return wrap("fourierft", model,
                peft_config("fourierft", FourierFTConfig, target_modules=targets, task_type=task_type, **options))


def build_hira(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """HiRA (Huang et al. 2025) from peft: ``W0 ⊙ (B A)`` added to ``W0``, on q and v with r = 8."""
    from peft import HiraConfig

    targets = pop_targets("hira", model, options, ["query", "value"])
    conv1d_layout(model, targets, options)
    options.setdefault("r", 8)
    return wrap("hira", model, peft_config("hira", HiraConfig, target_modules=targets, task_type=task_type, **options))


def build_ia3(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """(IA)³ (Liu et al. 2022) from peft: vectors scale the key and value outputs and the FFN's inner
    activations (the input of the FFN output projection). On GPT-2 the fused ``c_attn`` output (q, k and v) is
    scaled, as peft's own GPT-2 default does."""
    from peft import IA3Config

    roles = options.get("roles") or ["key", "value", "ffn_out"]
    targets = pop_targets("ia3", model, options, roles)
    conv1d_layout(model, targets, options)
    if "feedforward_modules" not in options:
        options["feedforward_modules"] = targets_for(model, ["ffn_out"]) if "ffn_out" in roles else []
    return wrap("ia3", model, peft_config("ia3", IA3Config, target_modules=targets, task_type=task_type, **options))


def build_prefix(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """Prefix tuning (Li & Liang 2021; the paper's "PreLayer") from peft: trainable key/value prefixes in every
    layer, ``num_virtual_tokens × 2 × layers × d`` parameters.

    Raises:
        ValueError: No task_type (peft's prompt learning needs one), or an encoder (BERT, RoBERTa) that takes no
            past key values in transformers 5.
    """
    from peft import PrefixTuningConfig

    if task_type is None:
        raise ValueError(
            f"Method 'prefix' needs a task_type for {describe(model)} (peft's prompt learning wraps the head): "
            "pass task_type='SEQ_CLS' or 'CAUSAL_LM'."
        )
    if model_type(model) in ("bert", "roberta", "xlm-roberta"):
        raise ValueError(
            f"Method 'prefix' cannot apply to {describe(model)}: prefix tuning feeds trained past key values, and "
            "transformers 5 encoders (BERT, RoBERTa) no longer accept them. Use it on a decoder (GPT-2, Llama)."
        )
    options.setdefault("num_virtual_tokens", 16)
    return wrap("prefix", model, peft_config("prefix", PrefixTuningConfig, task_type=task_type, **options))


def build_hut(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """HUT (this package's peft tuner) on q and v, r = 8 unless told otherwise.

    On GPT-2 the q and v blocks of the fused ``c_attn`` are adapted and k stays frozen (``fused_slices``), as the
    paper and LoRA do. Where the targeted layers have no bias (Llama attention) ``shift=False`` is passed unless
    given, so that the trained adapter merges into the base architecture."""
    from hut_peft.hut import HUTConfig

    roles = options.get("roles") or ["query", "value"]
    explicit = options.get("target_modules") is not None
    targets = pop_targets("hut", model, options, roles)
    if not explicit and "fused_slices" not in options:
        sliced = fused_mask(model, roles)
        if sliced is not None:
            options["fused_slices"] = {sliced[0]: sliced[1]}
    if "shift" not in options:
        layers = matched_layers(model, targets)
        options["shift"] = all(getattr(m, "bias", None) is not None for m in layers) if layers else True
    return wrap("hut", model, peft_config("hut", HUTConfig, target_modules=targets, task_type=task_type, **options))
