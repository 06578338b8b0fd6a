"""FLOPs and parameter counts, three ways, for any registered method on a published architecture shape.

1. The paper's weight-side accounting (§3.3, Table 2): per adapted d×k matrix and forward, LoRA adds
   ``(2r+1)dk`` (building ``W0 + BA``) and HUT ``4dk + rd + rk`` (eq. 10, building ``W_new``). Neither depends
   on the number of tokens.
2. The activation-side count of what our code executes per forward on N tokens: LoRA unmerged
   ``2Nr(d+k)`` (two thin matmuls), HUT ``N(d+2k) + r(d+k)`` (input scale, fused output scale-and-shift, the
   means of ``M_A`` and ``M_B``).
3. Measured: ``torch.utils.flop_counter.FlopCounterMode`` on one forward and one training step (forward and
   backward into the input), on a model built on the meta device, so no weights are needed. It counts
   matmul-like operations only (mm, bmm, addmm, attention, convolution), not element-wise work, which is why
   HUT's and (IA)³'s measured delta over the frozen model is exactly 0.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
from torch import nn

from .archs import ARCHS, build_arch, hidden_size

DEFAULT_METHODS = "hut,lora,ia3,full"


@dataclass(frozen=True)
class AdaptedMatrix:
    """One adapted ``d×k`` matrix (d inputs, k outputs) with rank ``r``; ``kind`` is ``"hut"`` or ``"lora"``."""

    d: int
    k: int
    r: int
    kind: str


def adapted_matrices(model: nn.Module) -> list[AdaptedMatrix]:
    """Every adapted d×k matrix of a HUT or LoRA model (a fused HUT layer counts once per adapted block)."""
    from peft.tuners.lora import LoraLayer

    from hut_peft.hut import HUTLayer

    found: list[AdaptedMatrix] = []
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
    """The paper's Table 2 accounting per forward: LoRA ``(2r+1)dk``, HUT ``4dk + rd + rk`` per matrix.

    Returns None when there is no HUT or LoRA matrix: the paper states no formula for other methods.
    """
    if not mats:
        return None
    return sum((2 * m.r + 1) * m.d * m.k if m.kind == "lora" else 4 * m.d * m.k + m.r * (m.d + m.k) for m in mats)


def activation_flops(mats: list[AdaptedMatrix], tokens: int) -> Optional[int]:
    """What our forward adds on ``tokens`` tokens, element-wise work included: LoRA ``2Nr(d+k)`` (the two thin
    matmuls, each multiply-add counted as 2), HUT ``N(d+2k) + r(d+k)`` (``x ⊙ a``; one multiply and one add per
    output; the two means). None when there is no HUT or LoRA matrix."""
    if not mats:
        return None
    return sum(2 * tokens * m.r * (m.d + m.k) if m.kind == "lora"
               else tokens * (m.d + 2 * m.k) + m.r * (m.d + m.k) for m in mats)


def measured_flops(model: nn.Module, batch: int, seq_len: int, train: bool) -> int:
    """FlopCounterMode's total (matmul-like ops only) for one forward on ``batch × seq_len`` input embeddings,
    and the backward of their sum when ``train`` (gradients flow into the input, as in the frozen floor)."""
    from torch.utils.flop_counter import FlopCounterMode

    ref = next(model.parameters())
    x = torch.randn(batch, seq_len, hidden_size(model.config), device=ref.device, dtype=ref.dtype,
                    requires_grad=train)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(inputs_embeds=x)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if train:
            hidden.sum().backward()
    return int(counter.get_total_flops())


@dataclass
class FlopsRow:
    """One method's counts; GFLOPs are per forward (or per training step) of the whole batch."""

    method: str
    trainable: int
    total: int
    paper_gflops: Optional[float]  # None: the paper gives no formula for this method
    activation_gflops: Optional[float]
    forward_gflops: float
    train_step_gflops: float
    forward_delta_gflops: float  # minus the frozen model's
    train_step_delta_gflops: float


def _model_factory(arch: str, model_path: Optional[str]) -> Callable[[], nn.Module]:
    if model_path is None:
        build_arch(arch)  # fail early on an unknown name
        return lambda: build_arch(arch)

    def from_folder() -> nn.Module:
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(model_path)
        with torch.device("meta"):
            return AutoModel.from_config(config)

    return from_folder


def flops_table(arch: str, methods: list[str], batch: int, seq_len: int, preset: Optional[str] = "paper-glue",
                model_path: Optional[str] = None) -> list[FlopsRow]:
    """One row for the frozen model, then one per method, all on the same meta-device shape.

    ``preset`` is applied to methods that define it (``paper-glue``: r = 8 on q and v for HUT and LoRA) and
    ignored by the others. ``methods=["all"]`` takes every registered method that applies to the shape.

    Raises:
        ValueError: Unknown architecture or method; a named method that cannot apply to the shape.
    """
    from .methods import METHODS, apply_method, count_parameters, get_method

    fresh = _model_factory(arch, model_path)
    base = fresh().requires_grad_(False)
    f0, t0 = measured_flops(base, batch, seq_len, False), measured_flops(base, batch, seq_len, True)
    rows = [FlopsRow("frozen", 0, count_parameters(base)[1], None, None, f0 / 1e9, t0 / 1e9, 0.0, 0.0)]
    take_all = methods == ["all"]
    for name in list(METHODS) if take_all else methods:
        method = get_method(name)
        options_preset = preset if preset in method.presets else None
        try:
            with torch.device("meta"):
                model = apply_method(name, fresh(), preset=options_preset)
        except ValueError as err:
            if take_all:
                continue  # e.g. BitFit on a bias-free Llama
            raise ValueError(f"flops: {name} cannot apply to {model_path or arch}: {err}") from err
        mats = adapted_matrices(model)
        paper, act = paper_weight_flops(mats), activation_flops(mats, batch * seq_len)
        f, t = measured_flops(model, batch, seq_len, False), measured_flops(model, batch, seq_len, True)
        trainable, total = count_parameters(model)
        rows.append(FlopsRow(name, trainable, total, None if paper is None else paper / 1e9,
                             None if act is None else act / 1e9, f / 1e9, t / 1e9, (f - f0) / 1e9, (t - t0) / 1e9))
    return rows


def format_rows(rows: list[FlopsRow]) -> str:
    """The rows as a markdown table (GFLOPs to two decimals)."""
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


NOTE = ("paper = weight-side accounting of §3.3 (per forward, independent of tokens); activation-side = what "
        "our code adds on batch×seq tokens; measured = torch.utils.flop_counter (matmul-like ops only, so "
        "element-wise work such as HUT's scales shows as Δ 0); Δ = minus the frozen model; the train step is "
        "forward + backward into the input.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="roberta-large", help=f"A published shape: {', '.join(ARCHS)}.")
    parser.add_argument("--model", help="A local model folder instead of --arch (its config only; no weights).")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"Comma-separated registry names, or 'all' (default: {DEFAULT_METHODS}).")
    parser.add_argument("--preset", default="paper-glue",
                        help="Method preset where a method has it (paper-glue: r=8 on q and v; paper-e2e: r=4).")
    parser.add_argument("--seq-len", type=int, default=512, help="Tokens per sequence (default 512).")
    parser.add_argument("--batch", type=int, default=1, help="Sequences per batch (default 1).")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a markdown table.")


def run(args: argparse.Namespace) -> int:
    """Entry point of `hut-peft flops`."""
    if args.seq_len < 1 or args.batch < 1:
        raise ValueError(f"--seq-len and --batch must be >= 1, got {args.seq_len} and {args.batch}.")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    with warnings.catch_warnings():  # peft probes a deprecated transformers attribute on every wrap
        warnings.filterwarnings("ignore", category=FutureWarning)
        rows = flops_table(args.arch, methods, args.batch, args.seq_len, args.preset, args.model)
    shape = args.model or args.arch
    if args.json:
        payload: dict[str, Any] = {"arch": shape, "batch": args.batch, "seq_len": args.seq_len,
                                   "preset": args.preset, "note": NOTE, "rows": [asdict(r) for r in rows]}
        print(json.dumps(payload, indent=2))
    else:
        print(f"{shape}, batch {args.batch} × {args.seq_len} tokens, preset {args.preset}\n")
        print(format_rows(rows))
        print(f"\n{NOTE}")
    return 0
