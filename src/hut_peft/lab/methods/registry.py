"""The one registry of fine-tuning methods: name → :class:`Method`. The CLI, recipes, FLOPs and benchmarks use
only this. peft's methods come from peft (``peft_methods.py``); HUT is this package's peft tuner; the bottleneck
and Hadamard adapters are written here because no package provides them for transformers 5 (``adapters.py``,
``hadamard.py`` say why); full, FT^Top2 and BitFit are ``requires_grad`` filters.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from .adapters import BottleneckAdapter, bottleneck_builder
from .arch import describe, freeze_except_head, transformer_blocks
from .hadamard import HadamardAdapter, build_hadamard_adapter, merge_hadamard
from .peft_methods import build_fourierft, build_hira, build_hut, build_ia3, build_lora, build_prefix, build_vera

# Attribute set on every model apply_method returns: what was applied, so it can be saved and re-applied.
RECORD_ATTR = "hut_peft_method"


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: how to build it, where it comes from, whether it merges away at inference.

    Attributes:
        name: Registry key (``--method``).
        description: One line: what trains.
        source: ``"peft"``, ``"paper"`` (HUT: this package's peft tuner) or ``"hut-peft (hand-written, why)"``.
        builder: ``builder(model, task_type=..., **options) -> nn.Module``; use :func:`apply_method`.
        merges: True when the trained model folds back into the base architecture (no inference latency).
        default_lr: Learning rate for MiniLM-size models when a recipe gives none (docs/methods.md: sources).
        presets: Named option sets, e.g. the paper's settings (``"paper-glue"``, ``"paper-e2e"``).
    """

    name: str
    description: str
    source: str
    builder: Callable[..., nn.Module]
    merges: bool
    default_lr: float
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters of ``model``, each shared tensor (tied embeddings) counted once.

    Nothing that trains is excluded: a peft ``modules_to_save`` copy of a head counts as trainable, and its
    frozen original counts in the total. Buffers (VeRA's shared random projections) are not parameters.
    """
    seen: dict[int, nn.Parameter] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, sum(p.numel() for p in seen.values())


# ------------------------------------------------------------------------------------ requires_grad filters
def _no_options(method: str, options: dict[str, Any]) -> None:
    if options:
        raise ValueError(f"Method {method!r} takes no options, got {', '.join(sorted(options))}.")


def build_full(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """Full fine-tuning: every parameter trains."""
    _no_options("full", options)
    model.requires_grad_(True)
    return model


def build_ft_top2(model: nn.Module, task_type: Optional[str] = None, layers: int = 2, **options: Any) -> nn.Module:
    """FT^Top2 (Li & Liang 2021): only the last ``layers`` transformer blocks, the final norm and a task head
    train. A tied LM head stays frozen with the input embedding it shares."""
    _no_options("ft_top2", options)
    blocks = list(transformer_blocks(model))
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= len(blocks):
        raise ValueError(f"Method 'ft_top2': layers must be an integer in 1..{len(blocks)}, got layers={layers!r}.")
    freeze_except_head(model)
    for block in blocks[-layers:]:
        block.requires_grad_(True)
    for name, module in model.named_modules():
        if name.split(".")[-1] in ("ln_f", "norm") and not any(True for _ in module.children()):
            module.requires_grad_(True)
    return model


def build_bitfit(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """BitFit (Ben Zaken et al. 2022): only the bias vectors (and a task head) train.

    Raises:
        ValueError: The architecture has no biases (Llama).
    """
    _no_options("bitfit", options)
    biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
    if not biases:
        raise ValueError(
            f"Method 'bitfit' cannot apply to {describe(model)}: BitFit trains only bias vectors, and this model "
            "has none (Llama-style layers are bias-free). Choose another method, e.g. hut or lora."
        )
    freeze_except_head(model)
    for p in biases:
        p.requires_grad_(True)
    return model


QV = ["query", "value"]
HAND = "hut-peft (hand-written, {})"
NO_ADAPTERHUB = "AdapterHub's adapters pins transformers 4.57"

METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("full", "Full fine-tuning: every parameter trains", HAND.format("a requires_grad filter"),
               build_full, True, 5e-5),
        Method("ft_top2", "FT^Top2: only the last two transformer blocks (and the head) train",
               HAND.format("a requires_grad filter"), build_ft_top2, True, 1e-4),
        Method("bitfit", "BitFit: only the bias vectors (and the head) train", HAND.format("a requires_grad filter"),
               build_bitfit, True, 1e-3),
        Method("hadapter", "Houlsby adapters: bottleneck after the attention output and after the FFN",
               HAND.format(NO_ADAPTERHUB), bottleneck_builder("hadapter", ("attn_out", "ffn_out"), False),
               False, 3e-4, {"paper-glue": {"bottleneck": 64}, "paper-glue-0.8m": {"bottleneck": 8},
                             "paper-e2e": {"bottleneck": 112}}),
        Method("padapter", "Pfeiffer adapter: bottleneck after the FFN only",
               HAND.format(NO_ADAPTERHUB), bottleneck_builder("padapter", ("ffn_out",), False), False, 3e-4,
               {"paper-glue": {"bottleneck": 64}, "paper-glue-0.8m": {"bottleneck": 16}}),
        Method("ladapter", "Lin et al. adapter: LayerNorm + bottleneck after the FFN",
               HAND.format(NO_ADAPTERHUB), bottleneck_builder("ladapter", ("ffn_out",), True, "relu"), False, 3e-4,
               {"paper-e2e": {"bottleneck": 224}, "paper-e2e-0.37m": {"bottleneck": 6}}),
        Method("lora", "LoRA: W0 + (alpha/r) B A on q and v", "peft", build_lora, True, 5e-4,
               {"paper-glue": {"r": 8, "lora_alpha": 16, "roles": QV},
                "paper-e2e": {"r": 4, "lora_alpha": 32, "roles": QV}}),
        Method("vera", "VeRA: frozen shared random A, B; trainable scaling vectors on q and v", "peft",
               build_vera, True, 1e-2, {"paper-glue": {"r": 256, "roles": QV}, "paper-e2e": {"r": 1024, "roles": QV}}),
        Method("fourierft", "FourierFT: n trainable spectral coefficients of dW on q and v", "peft",
               build_fourierft, True, 1e-2,
               {"paper-glue": {"n_frequency": 1000, "roles": QV}, "paper-e2e": {"n_frequency": 1000, "roles": QV}}),
        Method("prefix", "Prefix tuning (the paper's PreLayer): trainable key/value prefixes in every layer", "peft",
               build_prefix, False, 5e-3, {"paper-e2e": {"num_virtual_tokens": 7}}),
        Method("ia3", "(IA)^3: vectors scale k, v and the FFN inner activations", "peft", build_ia3, True, 1e-2),
        Method("hira", "HiRA: W0 + W0 ⊙ (B A) on q and v", "peft", build_hira, True, 5e-4),
        Method("hadamard_adapter", "Hadamard adapter: w ⊙ h + b on each self-attention output",
               HAND.format("Chen et al.; no package provides it"), build_hadamard_adapter, True, 1e-2),
        Method("hut", "HUT: γ ⊙ (x diag(m_A) W0 diag(m_B) + b0) + β on q and v",
               "paper (hut-peft's peft tuner, hut_peft.hut)", build_hut, True, 1e-2,
               {"paper-glue": {"r": 8, "roles": QV}, "paper-e2e": {"r": 4, "roles": QV}}),
    ]
}


def get_method(name: str) -> Method:
    """The registered method ``name``.

    Raises:
        ValueError: Unknown name; the message suggests the closest and lists all.
    """
    if name not in METHODS:
        close = difflib.get_close_matches(str(name), METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Known methods: {', '.join(METHODS)}.")
    return METHODS[name]


def resolve_options(name: str, preset: Optional[str] = None, **options: Any) -> dict[str, Any]:
    """The preset's options (if any) overridden by ``options``; explicit ``roles`` or ``target_modules`` replace
    the preset's targets.

    Raises:
        ValueError: Unknown method or preset.
    """
    method = get_method(name)
    if preset is None:
        return dict(options)
    if preset not in method.presets:
        raise ValueError(
            f"Method {name!r} has no preset {preset!r}; its presets: {', '.join(method.presets) or 'none'}."
        )
    base = dict(method.presets[preset])
    if options.keys() & {"roles", "target_modules"}:  # explicit targets replace the preset's, whichever form
        base.pop("roles", None)
        base.pop("target_modules", None)
    return {**base, **options}


def apply_method(name: str, model: nn.Module, *, task_type: Optional[str] = None, preset: Optional[str] = None,
                 **options: Any) -> nn.Module:
    """Return ``model`` ready to train with method ``name``: frozen where it should be, a task head trainable.

    peft methods (and HUT) return a ``PeftModel``; the hand-written ones modify ``model`` in place and return it.
    ``task_type`` defaults to what the model's class implies (``...ForSequenceClassification`` → ``"SEQ_CLS"``,
    which makes peft train the ``classifier`` / ``score`` head). Target modules come from the architecture
    (:func:`resolve_targets`); ``roles=[...]`` or peft's ``target_modules`` override them.

    Args:
        name: A key of :data:`METHODS`.
        model: A transformers model (BERT, RoBERTa, GPT-2, Llama families; meta-device models work).
        task_type: peft task type; inferred from the head class when None.
        preset: A name in ``METHODS[name].presets``; explicit options override it.
        **options: Method options (peft config fields for peft methods, ``bottleneck`` for adapters ...).

    Raises:
        ValueError: Unknown method, preset or option; a method that cannot apply to this architecture (the
            message names both and says why).
    """
    from .arch import infer_task_type

    method = get_method(name)
    resolved = resolve_options(name, preset, **options)
    if task_type is None:
        task_type = infer_task_type(model)
    out = method.builder(model, task_type=task_type, **dict(resolved))
    setattr(out, RECORD_ATTR, {"method": name, "task_type": task_type, "options": resolved})
    return out


def merge_method(model: nn.Module) -> nn.Module:
    """The trained model with its method folded in: the base architecture, no adapter modules.

    peft methods use ``merge_and_unload``; the Hadamard adapter folds into the attention output projections;
    full, FT^Top2 and BitFit have nothing to fold. Apply to a model returned by :func:`apply_method`.

    Raises:
        ValueError: The method does not merge (bottleneck adapters, prefix tuning).
    """
    from peft import PeftModel

    record = getattr(model, RECORD_ATTR, None)
    name = record["method"] if record else None
    adapters = any(isinstance(m, BottleneckAdapter) for m in model.modules())
    if (name is not None and not get_method(name).merges) or adapters:
        raise ValueError(
            f"Method {name or 'bottleneck adapter'!r} does not merge: it adds modules or inputs that have no "
            "counterpart in the base architecture. Keep the model unmerged for inference."
        )
    if isinstance(model, PeftModel):
        from peft.utils.other import ModulesToSaveWrapper

        from .adapters import replace_module

        # Unwrap trained head copies first: peft 0.21's BaseTuner._replace_module (used by IA3, VeRA, FourierFT
        # and HUT) reads `.weight` of the unwrapped module and fails on heads without one (RoBERTa's classifier).
        inner = model.get_base_model()
        for name, module in list(inner.named_modules()):
            if isinstance(module, ModulesToSaveWrapper):
                replace_module(inner, name, module.unload_and_optionally_merge_module(merge=True, safe_merge=False,
                                                                                      adapter_names=None))
        return model.merge_and_unload()
    if any(isinstance(m, HadamardAdapter) for m in model.modules()):
        return merge_hadamard(model)
    return model
