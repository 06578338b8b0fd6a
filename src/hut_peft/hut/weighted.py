"""Weighted combinations of HUT adapters (``HUTModel.add_weighted_adapter``), as peft offers for LoRA and (IA)³.

HUT is multiplicative: per layer an adapter is three scale vectors ``m_A``, ``m_B``, ``γ`` (identity = 1) and one
shift ``β`` (identity = 0). The default rule, ``combination_type="log"``, is task arithmetic in the coordinates
where the identity is zero and stacking adapters is addition: logarithms of the scales, the shift as it is::

    m = ∏_i m_i ** w_i      (for m_A, m_B and γ, elementwise)        β = Σ_i w_i β_i

So weights ``[1, 1]`` give the product of the two adapters' scales (what activating both does), ``[0.5]`` goes
half-way to the identity on a log scale, ``[-1]`` inverts an adapter's scales exactly, and weights summing to 1
give a weighted geometric mean. It needs every scale with a non-zero weight to be positive. ``"linear"`` combines
the deviations from the identity, ``m = 1 + Σ_i w_i (m_i − 1)``, ``β = Σ_i w_i β_i``: first-order equal to "log"
near the identity, defined for any sign, and (IA)³'s rule (a weighted sum of the vectors) when the weights sum to 1.

Only the means ``m_A``, ``m_B`` reach the forward, so the combination is defined on them and the new adapter stores
each mean in all of its ``r`` columns (its forward is exact for any ``r``; ``r`` is the first adapter's). A layer
that an adapter does not adapt contributes the identity. docs/method.md states the limits.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Literal

import torch
from peft.tuners.tuners_utils import BaseTuner
from peft.utils import ModulesToSaveWrapper

from .config import HUTConfig
from .layer import HUTLayer

# The tuner (model.py's HUTModel) is typed as peft's BaseTuner: model.py imports this module, not the reverse.

CombinationType = Literal["log", "linear"]
Vectors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # m_A, m_B, γ, β


def combine(vectors: list[Vectors], weights: list[float], combination_type: CombinationType = "log") -> Vectors:
    """Combine per-adapter ``(m_A, m_B, γ, β)`` of one layer with ``weights`` (float64 in, float64 out).

    Raises:
        ValueError: ``combination_type="log"`` and a scale with a non-zero weight has an entry <= 0.
    """
    m_a, m_b, gamma, beta = (torch.zeros_like(t, dtype=torch.float64) for t in vectors[0])
    for (a, b, g, s), w in zip(vectors, weights):
        if w == 0:
            continue
        beta = beta + w * s.double()
        for label, acc, value in (("m_A", m_a, a), ("m_B", m_b, b), ("gamma", gamma, g)):
            value = value.double()
            if combination_type == "log":
                if bool((value <= 0).any()):
                    raise ValueError(
                        f"combination_type='log' needs positive scales, but {label} has an entry of "
                        f"{value.min().item():.3g}. Use combination_type='linear', which combines the scales' "
                        "deviations from 1 and accepts any sign."
                    )
                acc.add_(w * value.log())
            else:
                acc.add_(w * (value - 1.0))
    if combination_type == "log":
        return m_a.exp(), m_b.exp(), gamma.exp(), beta
    return m_a + 1.0, m_b + 1.0, gamma + 1.0, beta


def _union_targets(configs: list[HUTConfig]) -> str | set[str]:
    kinds = {type(c.target_modules) for c in configs}
    if len(kinds) > 1:
        raise ValueError(
            "add_weighted_adapter: all adapters' target_modules must be of one kind (all regex strings or all "
            f"lists), got {sorted(k.__name__ for k in kinds)}."
        )
    if str in kinds:
        return "|".join(f"({c.target_modules})" for c in configs)
    return set().union(*(c.target_modules for c in configs))


def _check(model: BaseTuner, adapters: list[str], weights: list[float], adapter_name: str, combination_type: str) -> None:
    if adapter_name in model.peft_config:
        raise ValueError(f"add_weighted_adapter: an adapter named '{adapter_name}' exists already; pick a new name.")
    if not adapters or len(adapters) != len(weights):
        raise ValueError(
            f"add_weighted_adapter needs one weight per adapter, got {len(adapters)} adapters and {len(weights)} weights."
        )
    for name in adapters:
        if name not in model.peft_config:
            raise ValueError(f"Adapter {name} does not exist")
    if combination_type not in ("log", "linear"):
        raise ValueError(f"combination_type must be 'log' or 'linear', got {combination_type!r}.")
    configs = [model.peft_config[name] for name in adapters]
    for field in ("fused_slices", "layers_to_transform", "layers_pattern", "exclude_modules"):
        values = {repr(getattr(c, field)) for c in configs}
        if len(values) > 1:
            raise ValueError(
                f"add_weighted_adapter combines adapters that share {field}; {adapters} have {sorted(values)}."
            )
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper) and sum(a in module.modules_to_save for a in adapters) > 1:
            raise ValueError(
                "Cannot add weighted adapters if they target the same module with modules_to_save: a trained copy "
                "of a whole module has no HUT weighting. Combine adapters of which at most one trains that module."
            )


def add_weighted_adapter(
    model: BaseTuner,
    adapters: list[str],
    weights: list[float],
    adapter_name: str,
    combination_type: CombinationType = "log",
) -> None:
    """Add ``adapter_name``, the weighted combination of ``adapters`` (module docstring); it is not activated.

    Raises:
        ValueError: the name exists, an adapter does not, weights and adapters differ in number, an unknown
            combination type, adapters that differ in ``fused_slices`` (or layer selection), two adapters that
            train the same ``modules_to_save`` module, or a non-positive scale under ``"log"``.
    """
    _check(model, adapters, weights, adapter_name, combination_type)
    configs = [model.peft_config[name] for name in adapters]
    config = replace(
        configs[0], target_modules=_union_targets(configs), shift=any(c.shift for c in configs), init="identity",
        modules_to_save=sorted(set().union(*(c.modules_to_save or [] for c in configs))) or None,
    )
    plans = []  # computed for every layer before anything is written, so an error leaves the model unchanged
    for key, layer in model.model.named_modules():
        if not isinstance(layer, HUTLayer):
            continue
        present = [(name, w) for name, w in zip(adapters, weights) if name in layer.hut_A]
        if not present:
            continue
        masks = {layer.fused_mask.get(name) for name, _ in present}
        (mask,) = masks  # equal fused_slices configs give equal masks
        try:
            combined = combine([layer.adapter_vectors(n) for n, _ in present], [w for _, w in present], combination_type)
        except ValueError as err:
            raise ValueError(f"add_weighted_adapter({adapters}) at {key}: {err}") from err
        plans.append((layer, mask, combined))
    model.peft_config[adapter_name] = config
    for layer, mask, (m_a, m_b, gamma, beta) in plans:
        layer.update_layer(adapter_name, config, fused_mask=mask)
        with torch.no_grad():
            r = config.r
            layer.hut_A[adapter_name].copy_(m_a.unsqueeze(-1).expand(*m_a.shape, r))
            layer.hut_B[adapter_name].copy_(m_b.unsqueeze(-2).expand(*m_b.shape[:-1], r, m_b.shape[-1]))
            layer.hut_gamma[adapter_name].copy_(gamma)
            if adapter_name in layer.hut_beta:
                layer.hut_beta[adapter_name].copy_(beta)
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            (source, *_) = [a for a in adapters if a in module.modules_to_save] or [None]
            if source is not None:
                module.modules_to_save[adapter_name] = copy.deepcopy(module.modules_to_save[source]).requires_grad_(False)
