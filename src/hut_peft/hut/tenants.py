"""Many tenants, one run: train K HUT adapters together, each exactly as its own run would train it (issue 28).

A HUT adapter is a few vectors per layer, so a batch whose rows belong to different tenants needs one base call and
one gather per layer (DESIGN §1.7): ``h_i = base(x_i ⊙ a[t_i]) ⊙ c[t_i] + s[t_i]``. Training them together and
getting each tenant's own run back takes three pieces, each O(1) Python per layer and per step, whatever K is:

- :class:`TenantBank` keeps every tenant's parameters in one tensor ``data (K, F)`` (F = one adapter's parameter
  count). peft's per-adapter parameters (``...q_proj.hut_A.<tenant>``) become views of its rows, so every adapter
  still saves (``save_pretrained(selected_adapters=[t])``), loads, merges and serves as peft's, and always shows the
  trained values.
- :class:`JointStep` (``bank.step(model, tenants)``): the present tenants' rows of the bank, copied once
  (``index_select``) and sliced into per-layer leaves; each HUT layer gathers its rows' vectors from them. Each
  row's output depends on its own tenant's parameters only, and tenants' parameters are disjoint, so the gradient of
  ``Σ_t mean_t(loss)`` (:func:`tenant_mean_loss`) is, for each tenant, the gradient of its own run's loss.
- :class:`TenantAdamW`: torch's AdamW arithmetic on the ``(P, F)`` rows of the P present tenants, with a step
  count, learning-rate schedule and gradient clip per tenant; only the present tenants' rows and moments change.

Usage::

    names = add_adapters(model, tenants, HUTConfig(target_modules=["q_proj", "v_proj"]))
    bank = TenantBank(model, names)
    opt = TenantAdamW(bank, lr=1e-3, total_steps={t: steps_of[t] for t in names}, max_grad_norm=1.0)
    for batch, row_tenants in joint_batches:
        with bank.step(model, row_tenants) as step:
            logits = model(**batch).logits
            loss, per_tenant = causal_lm_tenant_loss(logits, batch_labels, step)
            loss.backward()
        opt.step(step)
    model.save_pretrained(out, selected_adapters=[t])  # each tenant, as its own run would have saved it

Exact (fp32, up to float rounding of reductions): each tenant's parameters equal those of an ordinary run of
that tenant alone (torch AdamW, ``clip_grad_norm_`` over its parameters, a linear or constant schedule) on the same
sequence of its batches. Not exact: dropout (the random masks differ), and a clip over all tenants at once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import nn

from .bank import BASE_ADAPTER, AdapterRows
from .config import HUTConfig
from .layer import HUTLayer
from .loading import _targeting
from .model import HUTModel

IGNORE_INDEX = -100  # transformers' label for tokens without loss (padding, prompt tokens)
SCHEDULES = ("linear", "constant")
BLOCK_ELEMENTS = 1 << 16  # TenantAdamW updates about this many numbers per state tensor at a time: they stay in cache
_UPCAST = (torch.float16, torch.bfloat16)  # peft's cast_adapter_dtype keeps adapters of such bases in fp32


def _hut_model(model: Any, what: str) -> PeftModel:
    if not (isinstance(model, PeftModel) and isinstance(model.base_model, HUTModel)):
        raise TypeError(
            f"{what} needs a PeftModel with HUT adapters, got a {type(model).__name__}: create it with "
            "get_peft_model(base, HUTConfig(...)) first."
        )
    return model


def _check_names(model: PeftModel, names: Sequence[str]) -> list[str]:
    names = list(names)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name or "." in name or name == BASE_ADAPTER:
            raise ValueError(
                f"Adapter name {name!r} cannot be used: names must be non-empty strings without '.' (peft's parameter "
                f"dicts refuse it), and '{BASE_ADAPTER}' means the base model."
            )
        if name in model.peft_config or name in seen:
            raise ValueError(f"Adapter with name '{name}' already exists.")  # peft's text for the same mistake
        seen.add(name)
    return names


def add_adapters(model: PeftModel, names: Sequence[str], config: HUTConfig,
                 autocast_adapter_dtype: bool = True) -> list[str]:
    """Add one fresh HUT adapter per name, in time linear in their number.

    Each adapter is what ``model.add_adapter(name, config)`` would create, in the same order (the same parameters,
    names, dtype, device and trainability, and the same random draws for ``init="perturbed"``): the first name of a
    new targeting goes through peft (one walk of the model), the others straight into the HUT layers that it
    occupies (``HUTLayer.update_layer``), without peft's per-call walk of the model and every loaded adapter, which
    made K calls cost O(K²).

    Args:
        model: A ``PeftModel`` with HUT adapters (``get_peft_model(base, HUTConfig(...))``).
        names: The new adapters' names.
        config: Their configuration; each adapter gets its own copy.
        autocast_adapter_dtype: As peft's ``add_adapter``: fp16/bf16 adapter weights are kept in fp32.

    Returns:
        The names added, in order.

    Raises:
        TypeError: ``model`` is not a peft model with HUT adapters, or ``config`` is not a ``HUTConfig``.
        ValueError: A name is empty, holds '.', is ``"__base__"``, repeats, or is already loaded.
    """
    model = _hut_model(model, "add_adapters")
    if not isinstance(config, HUTConfig):
        raise TypeError(f"add_adapters needs a HUTConfig, got a {type(config).__name__}.")
    names = _check_names(model, names)
    if not names:
        return []
    rest = names
    if config.modules_to_save:  # peft wraps and copies whole modules per adapter: leave that to peft
        for name in names:
            model.add_adapter(name, copy.deepcopy(config), autocast_adapter_dtype=autocast_adapter_dtype)
        return names
    key = _targeting(config)
    like = next((n for n, c in model.peft_config.items() if _targeting(c) == key and not c.modules_to_save), None)
    if like is None:  # a new targeting: peft resolves it (e.g. "all-linear") and wraps the modules, once
        model.add_adapter(names[0], copy.deepcopy(config), autocast_adapter_dtype=autocast_adapter_dtype)
        like, rest = names[0], names[1:]
    layers = [m for m in model.base_model.model.modules() if isinstance(m, HUTLayer) and like in m.hut_A]
    for name in rest:
        new_config = copy.deepcopy(config)
        model.peft_config[name] = new_config
        for layer in layers:
            layer.update_layer(name, new_config, fused_mask=layer.fused_mask.get(like))
            if autocast_adapter_dtype:
                for attr in layer.adapter_layer_names:
                    params = getattr(layer, attr)
                    if name in params and params[name].dtype in _UPCAST:
                        params[name] = nn.Parameter(params[name].data.float(), requires_grad=params[name].requires_grad)
    return names


# ------------------------------------------------------------------------------------------------- the bank
@dataclass(frozen=True)
class _Segment:
    """Where one per-adapter parameter (``layer.<attr>[name]``) lives in a bank row: columns [start, stop)."""

    attr: str
    start: int
    stop: int
    shape: tuple[int, ...]


class TenantBank:
    """Every tenant's HUT parameters in one tensor ``data`` (K, F); peft's per-adapter parameters are views of it.

    Building it copies each adapter once (O(K) per layer, once); afterwards the per-adapter parameters
    ``<module>.hut_A.<tenant>`` ... are views of row ``slot[tenant]``, frozen (``requires_grad=False``: the bank is
    what trains, through :class:`JointStep` and :class:`TenantAdamW`). They keep their names and shapes, so
    ``save_pretrained``, ``load_adapter``, ``merge_adapter`` and mixed-batch inference (``adapter_names=``) see the
    trained values. Moving or casting the model afterwards (``.to``, ``.half()``) replaces the parameters by copies;
    build a new bank then.

    Args:
        model: A ``PeftModel`` with HUT adapters.
        names: The tenants (loaded adapters); all of them when None. They must target the same modules with the
            same shapes (one config).

    Raises:
        TypeError: ``model`` is not a peft model with HUT adapters.
        ValueError: A name is not loaded, the adapters differ in their modules or shapes, or use ``fused_slices``.
    """

    def __init__(self, model: PeftModel, names: Optional[Sequence[str]] = None) -> None:
        model = _hut_model(model, "TenantBank")
        self.names: tuple[str, ...] = tuple(model.peft_config if names is None else names)
        if not self.names:
            raise ValueError("TenantBank needs at least one adapter.")
        unknown = [n for n in self.names if n not in model.peft_config]
        if unknown:
            raise ValueError(f"TenantBank: no adapter named {unknown[0]!r} is loaded (known: {len(model.peft_config)}).")
        self.slot: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        first = self.names[0]
        self.layers: list[HUTLayer] = []
        self.segments: list[list[_Segment]] = []
        width = 0
        for module in model.base_model.model.modules():
            if not isinstance(module, HUTLayer):
                continue
            held = [n for n in self.names if n in module.hut_A] if first not in module.hut_A else None
            if held:
                raise ValueError(f"TenantBank: adapters {held[0]!r} and {first!r} target different modules; train "
                                 "tenants of one config together (one bank per config).")
            if held is not None:
                continue
            if module.fused_mask.get(first):
                raise ValueError("TenantBank does not support fused_slices adapters (GPT-2's c_attn blocks).")
            segs = []
            for attr in module.adapter_layer_names:
                params = getattr(module, attr)
                if first not in params:
                    continue
                shape = tuple(params[first].shape)
                segs.append(_Segment(attr, width, width + math.prod(shape), shape))
                width += math.prod(shape)
            self.layers.append(module)
            self.segments.append(segs)
        ref = self.layers[0].hut_gamma[first]
        self.data = torch.empty(len(self.names), width, dtype=ref.dtype, device=ref.device)
        for layer, segs in zip(self.layers, self.segments):
            for seg in segs:
                params = getattr(layer, seg.attr)
                values = []
                for name in self.names:
                    value = params[name] if name in params else None
                    if value is None or tuple(value.shape) != seg.shape:
                        raise ValueError(f"TenantBank: adapter {name!r} differs from {first!r} in {seg.attr} (shape or "
                                         "presence); train tenants of one config together.")
                    values.append(value.detach().reshape(-1))
                self.data[:, seg.start:seg.stop] = torch.stack(values)
                for i, name in enumerate(self.names):
                    params[name] = nn.Parameter(self.data[i, seg.start:seg.stop].view(seg.shape), requires_grad=False)
            layer._hut_bank = None

    @property
    def width(self) -> int:
        """F: the number of parameters of one tenant's adapter."""
        return self.data.shape[1]

    def slots(self, tenants: Sequence[str]) -> torch.Tensor:
        """Bank slots of ``tenants`` (one per row), as a long tensor on the bank's device.

        Raises:
            ValueError: A tenant is not in the bank.
        """
        try:
            index = [self.slot[t] for t in tenants]
        except KeyError as err:
            raise ValueError(f"Tenant {err.args[0]!r} is not in this bank ({len(self.names)} tenants).") from None
        return torch.tensor(index, dtype=torch.long, device=self.data.device)

    @contextmanager
    def step(self, model: nn.Module, tenants: Union[Sequence[str], torch.Tensor]) -> Iterator[JointStep]:
        """Route ``model``'s forward passes through a :class:`JointStep` for rows of ``tenants`` (names or slots).

        Inside, every HUT layer of the bank takes row ``i``'s vectors from tenant ``tenants[i]``'s leaves.
        """
        slots = tenants if isinstance(tenants, torch.Tensor) else self.slots(tenants)
        joint = JointStep(self, slots)
        rows = AdapterRows((), self.names, joint=joint)
        handles = [layer.register_forward_pre_hook(partial(_route, rows=rows), with_kwargs=True) for layer in self.layers]
        try:
            yield joint
        finally:
            for handle in handles:
                handle.remove()


def _route(module: nn.Module, args: tuple, kwargs: dict, rows: AdapterRows) -> tuple[tuple, dict]:
    kwargs["adapter_names"] = rows
    return args, kwargs


class JointStep:
    """One joint step: the present tenants' bank rows as leaves, and each row's index among them.

    Attributes:
        present: (P,) bank slots of the tenants present, sorted.
        rows: (B,) for each row, its tenant's index in ``present``.
        values: (P, F) a copy of the present tenants' bank rows; the leaves are views of it, and
            :class:`TenantAdamW` updates it and writes it back.
    """

    def __init__(self, bank: TenantBank, slots: torch.Tensor) -> None:
        self.bank = bank
        self.present, self.rows = torch.unique(slots, sorted=True, return_inverse=True)
        self.values = bank.data.index_select(0, self.present)
        p = self.present.shape[0]
        self.leaves: dict[int, dict[str, torch.Tensor]] = {}
        for layer, segs in zip(bank.layers, bank.segments):
            self.leaves[id(layer)] = {
                seg.attr: self.values[:, seg.start:seg.stop].view(p, *seg.shape).requires_grad_() for seg in segs
            }

    def vectors(self, layer: HUTLayer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(a, c, s)`` of the present tenants on ``layer``, shapes (P, 1, d), (P, 1, k), (P, 1, k): the same
        operations, in the same order, as ``HUTLayer._composed`` for one adapter."""
        leaves = self.leaves[id(layer)]
        gamma = leaves["hut_gamma"]
        m_a = leaves["hut_A"].mean(dim=-1)
        m_b = leaves["hut_B"].mean(dim=-2)
        beta = leaves.get("hut_beta")
        beta = torch.zeros_like(gamma) if beta is None else beta
        c = gamma * m_b
        b0 = layer._base_bias()
        if b0 is None:
            s = beta
        else:
            b0 = b0.detach().to(gamma.dtype)
            s = torch.addcmul(beta, gamma, b0) - c * b0
        return m_a.unsqueeze(1), c.unsqueeze(1), s.unsqueeze(1)

    def grads(self) -> list[torch.Tensor]:
        """The present tenants' gradients, one (P, n) tensor per bank segment, in column order (zeros where a leaf
        got none)."""
        p = self.present.shape[0]
        out = []
        for layer, segs in zip(self.bank.layers, self.bank.segments):
            leaves = self.leaves[id(layer)]
            for seg in segs:
                g = leaves[seg.attr].grad
                out.append((torch.zeros_like(leaves[seg.attr]) if g is None else g).reshape(p, -1))
        return out

    def blocks(self, grads: list[torch.Tensor], columns: int) -> Iterator[tuple[int, int, list[torch.Tensor]]]:
        """Consecutive segments grouped into blocks of at least ``columns`` bank columns (the last may be smaller):
        ``(start, stop, their gradients)``."""
        start, parts = 0, []
        for g in grads:
            parts.append(g)
            stop = start + sum(x.shape[1] for x in parts)
            if stop - start >= columns:
                yield start, stop, parts
                start, parts = stop, []
        if parts:
            yield start, start + sum(x.shape[1] for x in parts), parts

    def grad(self) -> torch.Tensor:
        """(P, F) the present tenants' gradients, laid out as the bank."""
        return torch.cat(self.grads(), dim=1)


# -------------------------------------------------------------------------------------------------- losses
def tenant_mean_loss(row_sums: torch.Tensor, row_counts: torch.Tensor, step: JointStep) -> tuple[torch.Tensor, torch.Tensor]:
    """``Σ_t (Σ loss of t's rows) / (t's count)``: each tenant's loss averaged over its own rows or tokens only.

    Args:
        row_sums: (B,) each row's summed loss.
        row_counts: (B,) what each row counts for the average (its tokens with a label, or 1 for a row mean).
        step: The joint step (which tenant each row belongs to).

    Returns:
        The loss to differentiate (a scalar), and the (P,) per-tenant mean losses, detached, in ``step.present`` order.
    """
    p = step.present.shape[0]
    sums = torch.zeros(p, dtype=row_sums.dtype, device=row_sums.device).index_add(0, step.rows, row_sums)
    counts = torch.zeros(p, dtype=row_sums.dtype, device=row_sums.device).index_add(0, step.rows, row_counts.to(row_sums.dtype))
    means = sums / counts.clamp(min=1)
    return means.sum(), means.detach()


def causal_lm_tenant_loss(logits: torch.Tensor, labels: torch.Tensor, step: JointStep) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy averaged per tenant over its own labelled tokens (transformers' causal-LM loss for
    each tenant's rows alone), summed over tenants. ``labels`` (B, T) uses -100 for tokens without loss."""
    shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]  # as transformers' ForCausalLMLoss shifts
    tokens = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), shift_labels.reshape(-1),
                             ignore_index=IGNORE_INDEX, reduction="none").view(shift_labels.shape)
    return tenant_mean_loss(tokens.sum(dim=1), (shift_labels != IGNORE_INDEX).sum(dim=1), step)


# ----------------------------------------------------------------------------------------------- optimiser
def schedule_factor(schedule: str, step: torch.Tensor, total: torch.Tensor, warmup: int = 0) -> torch.Tensor:
    """transformers' learning-rate multipliers (``get_scheduler``), vectorised over tenants, in float64.

    ``step`` is the number of updates done before this one (LambdaLR's ``last_epoch``), ``total`` the tenant's
    number of training steps.

    Raises:
        ValueError: ``schedule`` is not one of ``SCHEDULES``.
    """
    step, total = step.double(), total.double()
    warm = step / max(1, warmup)
    if schedule == "constant":
        after = torch.ones_like(step)
    elif schedule == "linear":
        after = ((total - step) / (total - warmup).clamp(min=1)).clamp(min=0.0)
    else:
        raise ValueError(f"Unknown schedule {schedule!r}; TenantAdamW supports {', '.join(SCHEDULES)}.")
    return torch.where(step < warmup, warm, after)


class TenantAdamW:
    """AdamW over a :class:`TenantBank`, each tenant as if it had its own ``torch.optim.AdamW``.

    Per tenant: a step count (Adam's bias correction), the learning rate ``lr × schedule(step, total_steps)`` (as
    transformers' ``get_scheduler`` with LambdaLR), the decoupled weight decay, and, with ``max_grad_norm``, its
    gradients clipped by the norm of its own gradients (``clip_grad_norm_`` over its parameters). All of them
    advance only on steps that hold the tenant's rows. The arithmetic is torch's single-tensor AdamW, elementwise on
    the (P, F) rows of the present tenants: the moments of absent tenants are not read or written.

    Args:
        bank: The tenants' bank.
        lr: Peak learning rate.
        betas: Adam's (β1, β2).
        eps: Adam's ε.
        weight_decay: Decoupled weight decay (torch's AdamW default, 0.01).
        max_grad_norm: Clip each tenant's gradient norm to this (None: no clip).
        total_steps: Tenant → number of its steps, for the schedule (needed by ``"linear"``).
        schedule: ``"linear"`` (transformers' default) or ``"constant"``.
        warmup_steps: Linear warm-up steps, per tenant.

    Raises:
        ValueError: An unknown schedule, a linear schedule without ``total_steps``, or a bad hyperparameter.
    """

    def __init__(self, bank: TenantBank, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, max_grad_norm: Optional[float] = None,
                 total_steps: Optional[Mapping[str, int]] = None, schedule: str = "linear", warmup_steps: int = 0) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {schedule!r}; TenantAdamW supports {', '.join(SCHEDULES)}.")
        if schedule == "linear" and total_steps is None:
            raise ValueError("TenantAdamW(schedule='linear') needs total_steps (tenant -> its number of steps).")
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"TenantAdamW: invalid hyperparameters lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}.")
        if max_grad_norm is not None and max_grad_norm <= 0:
            raise ValueError(f"TenantAdamW: max_grad_norm must be > 0 or None, got {max_grad_norm}.")
        self.bank, self.lr, self.betas, self.eps = bank, lr, betas, eps
        self.weight_decay, self.max_grad_norm = weight_decay, max_grad_norm
        self.schedule, self.warmup_steps = schedule, warmup_steps
        k = len(bank.names)
        self.exp_avg = torch.zeros_like(bank.data)
        self.exp_avg_sq = torch.zeros_like(bank.data)
        self.steps = torch.zeros(k, dtype=torch.long)
        self.total_steps = torch.zeros(k, dtype=torch.long)
        if total_steps is not None:
            self.total_steps[bank.slots(list(total_steps)).cpu()] = torch.tensor(list(total_steps.values()), dtype=torch.long)

    def learning_rates(self, slots: torch.Tensor) -> torch.Tensor:
        """(P,) float64 learning rates of the next step of the tenants at ``slots``."""
        slots = slots.cpu()
        return self.lr * schedule_factor(self.schedule, self.steps[slots], self.total_steps[slots], self.warmup_steps)

    @torch.no_grad()
    def step(self, joint: JointStep) -> Optional[torch.Tensor]:
        """One AdamW step for the tenants present in ``joint`` (after its backward).

        The present tenants' rows of the parameters and moments are gathered once and written back once; in
        between, the update runs block by block over the columns (about ``BLOCK_ELEMENTS`` numbers of each tensor
        at a time, so a block's parameters, gradients and moments stay in cache), never tenant by tenant.

        Returns:
            With ``max_grad_norm``, the present tenants' (P,) gradient norms before clipping; else None.
        """
        present, cpu = joint.present, joint.present.cpu()
        dtype, device = self.bank.data.dtype, self.bank.data.device
        p = present.shape[0]
        grads = joint.grads()
        coef = norms = None
        if self.max_grad_norm is not None:
            # clip_grad_norm_: the norm of the per-tensor norms; grads × min(max_norm / (norm + 1e-6), 1)
            norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=1) for g in grads], dim=1),
                                             dim=1, keepdim=True)
            coef = torch.clamp(self.max_grad_norm / (norms + 1e-6), max=1.0)
        lr = self.learning_rates(present)
        steps = self.steps[cpu] + 1
        self.steps[cpu] = steps
        beta1, beta2 = self.betas

        def column(v: torch.Tensor) -> torch.Tensor:  # float64 per tenant -> (P, 1) in the bank's dtype
            return v.to(dtype).to(device).unsqueeze(1)

        decay = column(1 - lr * self.weight_decay) if self.weight_decay != 0 else None
        steps64 = steps.double()
        neg_step_size = column(-(lr / (1 - beta1 ** steps64)))
        bias_correction2_sqrt = column((1 - beta2 ** steps64).sqrt())
        params = joint.values
        exp_avgs = self.exp_avg.index_select(0, present)
        exp_avg_sqs = self.exp_avg_sq.index_select(0, present)
        for start, stop, parts in joint.blocks(grads, max(1, BLOCK_ELEMENTS // p)):
            cols = slice(start, stop)
            grad = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            if coef is not None:
                grad = grad * coef
            param, exp_avg, exp_avg_sq = params[:, cols], exp_avgs[:, cols], exp_avg_sqs[:, cols]
            if decay is not None:
                param.mul_(decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(self.eps)
            # param.addcdiv_(exp_avg, denom, value=-step_size) computes param + (value * exp_avg) / denom
            param.add_(torch.mul(exp_avg, neg_step_size).div_(denom))
        self.bank.data.index_copy_(0, present, params)
        self.exp_avg.index_copy_(0, present, exp_avgs)
        self.exp_avg_sq.index_copy_(0, present, exp_avg_sqs)
        return None if norms is None else norms.squeeze(1)

    def state_dict(self) -> dict[str, Any]:
        """Moments, step counts and totals, for resuming a joint run."""
        return {"names": list(self.bank.names), "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq,
                "steps": self.steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (same tenants, same order).

        Raises:
            ValueError: The state belongs to other tenants.
        """
        if list(state["names"]) != list(self.bank.names):
            raise ValueError("TenantAdamW.load_state_dict: the state was saved for other tenants (or another order).")
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps.copy_(state["steps"])
        self.total_steps.copy_(state["total_steps"])
