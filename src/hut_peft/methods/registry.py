"""The one registry of fine-tuning methods: name → builder. The CLI, recipes, FLOPs and benchmarks use only
this. peft methods come from peft (not re-implemented); the bottleneck and Hadamard adapters are written
here (modules.py says why)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

from .arch import FUSED_QKV, head_parameters, model_type, target_regex, transformer_blocks
from .modules import BottleneckAdapter, HadamardAdapter, replace_module


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: how to build it, where it comes from, whether it merges away at inference."""

    name: str
    description: str
    source: str
    builder: Callable[..., nn.Module]
    merges: bool
    default_lr: float
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each shared tensor counted once."""
    seen: dict[int, Any] = {}
    for p in model.parameters():
        seen.setdefault(id(p), p)
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, sum(p.numel() for p in seen.values())


def _freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def _train_head(model: nn.Module) -> None:
    for p in head_parameters(model):
        p.requires_grad_(True)


def _roles(model: nn.Module, options: dict[str, Any], default: list[str]) -> Any:
    """``target_modules`` from the user, else a regex for the default roles of this architecture."""
    if options.get("target_modules") is not None:
        return options.pop("target_modules")
    options.pop("target_modules", None)
    return target_regex(model, default)


def _peft(model: nn.Module, config) -> nn.Module:
    from peft import get_peft_model

    return get_peft_model(model, config)


# ------------------------------------------------------------------------------------- builders
def build_full(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def build_ft_top2(model: nn.Module, task_type: Optional[str] = None, layers: int = 2, **options: Any) -> nn.Module:
    """FT^Top2: only the last ``layers`` transformer blocks (and the head and final norm) train."""
    _freeze(model)
    for block in list(transformer_blocks(model))[-layers:]:
        block.requires_grad_(True)
    for name, module in model.named_modules():
        if name.endswith(("ln_f", "model.norm")):
            module.requires_grad_(True)
    _train_head(model)
    if model_type(model) == "gpt2" and hasattr(model, "lm_head"):
        pass  # lm_head is tied to the input embedding, which stays frozen
    return model


def build_bitfit(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    _freeze(model)
    biases = [p for n, p in model.named_parameters() if n.endswith(".bias")]
    if not biases:
        raise ValueError(
            f"bitfit trains only biases, and this {type(model).__name__} ({model_type(model)}) has none. "
            "Choose another method."
        )
    for p in biases:
        p.requires_grad_(True)
    _train_head(model)
    return model


def build_hut(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    """HUT on q and v by default. GPT-2: the q and v blocks of c_attn (k frozen), as the paper. Bias-free
    targets (Llama attention) get ``shift=False`` unless given, so the adapter can merge."""
    from ..hut import HUTConfig

    kind = model_type(model)
    if options.get("target_modules") is None and kind in FUSED_QKV:
        name, blocks = FUSED_QKV[kind]
        options.setdefault("fused_slices", {name: [True, False, True]})
        options["target_modules"] = [name]
    targets = _roles(model, options, ["query", "value"])
    if "shift" not in options:
        import re

        probe = re.compile(targets) if isinstance(targets, str) else None
        layers = [m for n, m in model.named_modules()
                  if (probe.fullmatch(n) if probe else any(n == t or n.endswith("." + t) for t in targets))]
        options["shift"] = all(getattr(m, "bias", None) is not None for m in layers) if layers else True
    return _peft(model, HUTConfig(target_modules=targets, task_type=task_type, **options))


def build_lora(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    from peft import LoraConfig

    options.setdefault("r", 8)
    options.setdefault("lora_alpha", 16)
    targets = _roles(model, options, ["query", "value"])
    return _peft(model, LoraConfig(target_modules=targets, task_type=task_type, **options))


def build_ia3(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    from peft import IA3Config

    if options.get("target_modules") is None:
        options["target_modules"] = target_regex(model, ["key", "value", "ffn_out"])
        options.setdefault("feedforward_modules", target_regex(model, ["ffn_out"]))
    return _peft(model, IA3Config(task_type=task_type, **options))


def build_vera(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    from peft import VeraConfig

    options.setdefault("r", 256)
    targets = _roles(model, options, ["query", "value"])
    return _peft(model, VeraConfig(target_modules=targets, task_type=task_type, **options))


def build_fourierft(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    from peft import FourierFTConfig

    options.setdefault("scaling", 150.0)
    targets = _roles(model, options, ["query", "value"])
    if "n_frequency" not in options:  # the paper's 1000, or all the frequencies a tiny layer has
        import re

        probe = re.compile(targets) if isinstance(targets, str) else None
        sizes = [m.weight.numel() for n, m in model.named_modules()
                 if hasattr(m, "weight") and (probe.fullmatch(n) if probe else n.endswith(tuple(targets)))]
        options["n_frequency"] = min([1000] + sizes)
    return _peft(model, FourierFTConfig(target_modules=targets, task_type=task_type, **options))


def build_hira(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    from peft import HiraConfig

    options.setdefault("r", 8)
    targets = _roles(model, options, ["query", "value"])
    return _peft(model, HiraConfig(target_modules=targets, task_type=task_type, **options))


def build_prefix(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    from peft import PrefixTuningConfig

    if task_type is None:
        raise ValueError("prefix tuning needs a task_type (SEQ_CLS or CAUSAL_LM) for peft's prompt learning.")
    options.setdefault("num_virtual_tokens", 16)
    if model_type(model) in ("bert", "roberta", "xlm-roberta"):
        raise ValueError(
            f"prefix tuning needs a model that accepts past key values; {type(model).__name__} does not in "
            "transformers 5. Use it on a decoder (GPT-2, Llama), or choose another method."
        )
    try:
        return _peft(model, PrefixTuningConfig(task_type=task_type, **options))
    except ValueError as err:
        if "past key values" not in str(err):
            raise
        raise ValueError(
            f"prefix tuning needs a model that accepts past key values; this {type(model).__name__} does not "
            "in this transformers version (encoders such as BERT lost it in transformers 5). Use it on a "
            "decoder (GPT-2, Llama), or choose another method."
        ) from err


def build_hadamard_adapter(model: nn.Module, task_type: Optional[str] = None, **options: Any) -> nn.Module:
    if options:
        raise ValueError(f"hadamard_adapter takes no options, got {sorted(options)}.")
    from .arch import resolve_targets

    _freeze(model)
    for name in resolve_targets(model, "attn_out"):
        replace_module(model, name, HadamardAdapter(model.get_submodule(name)))
    _train_head(model)
    return model


def _bottleneck(roles: list[str], layer_norm: bool) -> Callable[..., nn.Module]:
    def build(model: nn.Module, task_type: Optional[str] = None, bottleneck: int = 64, **options: Any) -> nn.Module:
        if options:
            raise ValueError(f"bottleneck adapters take only 'bottleneck', got {sorted(options)}.")
        from .arch import resolve_targets

        _freeze(model)
        for role in roles:
            for name in resolve_targets(model, role):
                replace_module(model, name, BottleneckAdapter(model.get_submodule(name), bottleneck, layer_norm))
        _train_head(model)
        return model

    return build


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("full", "Full fine-tuning: every parameter trains", "transformers", build_full, True, 5e-5),
        Method("ft_top2", "FT^Top2: only the last two transformer blocks (and the head) train",
               "paper (Li & Liang 2021)", build_ft_top2, True, 1e-4),
        Method("bitfit", "BitFit: only the bias vectors train", "hand-written (a requires_grad filter)",
               build_bitfit, True, 1e-3),
        Method("hadapter", "Houlsby bottleneck adapters after attention and after the FFN",
               "hand-written (AdapterHub pins transformers 4.57)", _bottleneck(["attn_out", "ffn_out"], False),
               False, 5e-4, {"paper-6m": {"bottleneck": 64}, "paper-0.8m": {"bottleneck": 8}}),
        Method("padapter", "Pfeiffer bottleneck adapter after the FFN only",
               "hand-written (AdapterHub pins transformers 4.57)", _bottleneck(["ffn_out"], False), False, 5e-4,
               {"paper-3m": {"bottleneck": 64}, "paper-0.8m": {"bottleneck": 16}}),
        Method("ladapter", "Lin et al. adapter (with its own LayerNorm) after the FFN",
               "hand-written (AdapterHub pins transformers 4.57)", _bottleneck(["ffn_out"], True), False, 5e-4),
        Method("lora", "LoRA: W0 + (alpha/r) B A on q and v", "peft", build_lora, True, 5e-4,
               {"paper-glue": {"r": 8, "lora_alpha": 16}, "paper-e2e": {"r": 4, "lora_alpha": 32}}),
        Method("vera", "VeRA: shared frozen random A, B; trainable scaling vectors", "peft", build_vera, True, 5e-3,
               {"paper-glue": {"r": 256}}),
        Method("fourierft", "FourierFT: a sparse spectrum of dW on q and v", "peft", build_fourierft, True, 5e-3,
               {"paper-glue": {"n_frequency": 1000}}),
        Method("prefix", "Prefix tuning (the paper's PreLayer): trainable key/value prefixes", "peft",
               build_prefix, False, 5e-3, {"paper-e2e": {"num_virtual_tokens": 7}}),
        Method("ia3", "(IA)^3: learned vectors scale k, v and the FFN activations", "peft", build_ia3, True, 5e-3),
        Method("hira", "HiRA: W0 ⊙ (B A) update, Hadamard high-rank", "peft", build_hira, True, 5e-4),
        Method("hadamard_adapter", "Hadamard adapter: w ⊙ h + b on each self-attention output",
               "hand-written (Chen et al.; no package)", build_hadamard_adapter, True, 5e-3),
        Method("hut", "HUT: γ ⊙ (x diag(m_A) W0 diag(m_B) + b0) + β on q and v", "hut-peft (this package)",
               build_hut, True, 1e-2, {"paper-glue": {"r": 8}, "paper-e2e": {"r": 4}}),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        import difflib

        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Known: {', '.join(METHODS)}.")
    return METHODS[name]


def apply_method(name: str, model: nn.Module, *, task_type: Optional[str] = None, preset: Optional[str] = None,
                 **options: Any) -> nn.Module:
    """Return ``model`` ready to train with method ``name``: frozen where it should be, the head trainable.

    Raises:
        ValueError: Unknown method or preset; a method that cannot apply to this architecture.
    """
    method = get_method(name)
    if preset is not None:
        if preset not in method.presets:
            raise ValueError(f"Method {name!r} has no preset {preset!r}; presets: {', '.join(method.presets) or 'none'}.")
        options = {**method.presets[preset], **options}
    return method.builder(model, task_type=task_type, **options)
