"""FLOPs and parameter counts, three ways, for any registered method on a published architecture shape.

1. The paper's weight-side accounting (§3.3, Table 2): per adapted d×k matrix and forward, LoRA adds
   ``(2r+1)dk`` (building ``W0 + BA``) and HUT ``4dk + rd + rk`` (eq. 10, building ``W_new``).
2. The activation-side count of what our code executes per forward on N tokens: LoRA unmerged
   ``2Nr(d+k)`` (two thin matmuls), HUT ``N(d+2k) + r(d+k)`` (input scale, output scale and shift, means).
3. Measured: ``torch.utils.flop_counter.FlopCounterMode`` on a forward and a training step (forward and
   backward), on a model built on the meta device, so no weights are needed. It counts matmul-like
   operations only (not element-wise work), which is why HUT's measured delta over the frozen model is 0.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
from torch import nn

# Published configurations (hub config.json values), built on the meta device: no weights.
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "roberta-base": ("roberta", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, vocab_size=50265, max_position_embeddings=514)),
    "roberta-large": ("roberta", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096, vocab_size=50265, max_position_embeddings=514)),
    "bert-base": ("bert", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
    "minilm-l6": ("bert", dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)),
    "gpt2": ("gpt2", dict(n_embd=768, n_layer=12, n_head=12)),
    "gpt2-medium": ("gpt2", dict(n_embd=1024, n_layer=24, n_head=16)),
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, vocab_size=49152)),
}


def build_arch(name: str, device: str = "meta", layers: Optional[int] = None) -> nn.Module:
    """A bare model of a published shape (random or meta weights), optionally cut to ``layers`` blocks."""
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

    if name not in ARCHS:
        raise ValueError(f"Unknown --arch {name!r}; known: {', '.join(ARCHS)} (or pass --model PATH).")
    kind, kwargs = ARCHS[name]
    kwargs = dict(kwargs)
    if layers is not None:
        kwargs["n_layer" if kind == "gpt2" else "num_hidden_layers"] = layers
    config_cls, model_cls = {"roberta": (RobertaConfig, RobertaModel), "bert": (BertConfig, BertModel),
                             "gpt2": (GPT2Config, GPT2Model), "llama": (LlamaConfig, LlamaModel)}[kind]
    with torch.device(device):
        return model_cls(config_cls(**kwargs))


@dataclass
class AdaptedMatrix:
    d: int
    k: int
    r: int
    kind: str  # "hut" or "lora"


def adapted_matrices(model: nn.Module) -> list[AdaptedMatrix]:
    """Every adapted d×k matrix of a HUT or LoRA model (a fused HUT layer counts once per adapted block)."""
    from peft.tuners.lora import LoraLayer

    from .hut import HUTLayer

    found = []
    for module in model.modules():
        if isinstance(module, HUTLayer):
            for name in module.hut_A:
                mask = module.fused_mask.get(name)
                blocks = sum(mask) if mask else 1
                k = module.out_features // (len(mask) if mask else 1)
                found += [AdaptedMatrix(module.in_features, k, module.r[name], "hut")] * blocks
        elif isinstance(module, LoraLayer):
            for r in module.r.values():
                found.append(AdaptedMatrix(module.in_features, module.out_features, r, "lora"))
    return found


def paper_weight_flops(mats: list[AdaptedMatrix]) -> Optional[int]:
    """The paper's Table 2 accounting; None for methods it gives no formula for."""
    if not mats:
        return None
    return sum((2 * m.r + 1) * m.d * m.k if m.kind == "lora" else 4 * m.d * m.k + m.r * (m.d + m.k) for m in mats)


def activation_flops(mats: list[AdaptedMatrix], tokens: int) -> Optional[int]:
    """What our forward adds per call on ``tokens`` tokens (element-wise work included)."""
    if not mats:
        return None
    return sum(2 * tokens * m.r * (m.d + m.k) if m.kind == "lora"
               else tokens * (m.d + 2 * m.k) + m.r * (m.d + m.k) for m in mats)


def measured_flops(model: nn.Module, batch: int, seq_len: int, train: bool) -> int:
    """FlopCounterMode's total for one forward (and backward, when ``train``) on embeddings of the batch."""
    from torch.utils.flop_counter import FlopCounterMode

    ref = next(model.parameters())
    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd
    x = torch.randn(batch, seq_len, hidden, device=ref.device, requires_grad=train)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(inputs_embeds=x)
        hidden_states = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if train:
            hidden_states.sum().backward()
    return int(counter.get_total_flops())


@dataclass
class FlopsRow:
    method: str
    trainable: int
    paper_gflops: Optional[float]
    activation_gflops: Optional[float]
    forward_gflops: float
    train_step_gflops: float
    forward_delta_gflops: float
    train_step_delta_gflops: float


def flops_table(arch: str, methods: list[str], batch: int, seq_len: int, preset: str = "paper-glue",
                model_path: Optional[str] = None) -> list[FlopsRow]:
    """One row per method (plus the frozen model), all on the same meta-device shape."""
    from .methods import apply_method, count_parameters, get_method

    def fresh() -> nn.Module:
        if model_path:
            from transformers import AutoConfig, AutoModel

            with torch.device("meta"):
                return AutoModel.from_config(AutoConfig.from_pretrained(model_path))
        return build_arch(arch)

    base = fresh()
    for p in base.parameters():
        p.requires_grad_(False)
    f0, t0 = measured_flops(base, batch, seq_len, False), measured_flops(base, batch, seq_len, True)
    rows = [FlopsRow("frozen", 0, None, None, f0 / 1e9, t0 / 1e9, 0.0, 0.0)]
    for name in methods:
        method = get_method(name)
        options = method.presets.get(preset, {}) if preset else {}
        try:
            with torch.device("meta"):
                model = apply_method(name, fresh(), **options)
        except ValueError as err:
            raise ValueError(f"flops: {name} cannot apply to {arch}: {err}") from err
        mats = adapted_matrices(model)
        paper, act = paper_weight_flops(mats), activation_flops(mats, batch * seq_len)
        f, t = measured_flops(model, batch, seq_len, False), measured_flops(model, batch, seq_len, True)
        rows.append(FlopsRow(name, count_parameters(model)[0], None if paper is None else paper / 1e9,
                             None if act is None else act / 1e9, f / 1e9, t / 1e9, (f - f0) / 1e9, (t - t0) / 1e9))
    return rows


def format_rows(rows: list[FlopsRow]) -> str:
    def g(v: Optional[float]) -> str:
        return "–" if v is None else f"{v:.2f}"

    lines = ["| method | trainable | paper GFLOPs (weight-side) | our added GFLOPs (activation-side) | "
             "forward GFLOPs (measured) | train step GFLOPs (measured) | Δ forward | Δ train step |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {r.trainable:,} | {g(r.paper_gflops)} | {g(r.activation_gflops)} | "
                     f"{r.forward_gflops:.1f} | {r.train_step_gflops:.1f} | {r.forward_delta_gflops:+.2f} | "
                     f"{r.train_step_delta_gflops:+.2f} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="roberta-large", help=f"One of {', '.join(ARCHS)}.")
    parser.add_argument("--model", help="A local model folder instead of --arch (config only, no weights).")
    parser.add_argument("--methods", default="hut,lora,ia3,full", help="Comma-separated registry names.")
    parser.add_argument("--preset", default="paper-glue", help="Method preset (paper-glue: r=8 on q and v).")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft flops`."""
    rows = flops_table(args.arch, [m for m in args.methods.split(",") if m], args.batch, args.seq_len,
                       args.preset, args.model)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(f"{args.model or args.arch}, batch {args.batch} × {args.seq_len} tokens, preset {args.preset}\n")
        print(format_rows(rows))
    return 0
