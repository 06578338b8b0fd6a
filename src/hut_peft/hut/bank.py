"""Mixed-adapter batches: every row of a batch gathers its own adapter's vectors (DESIGN §1.7).

Each HUT adapter reduces, on one layer, to an input scale ``a = m_A`` (d,), an output scale ``c = γ ⊙ m_B`` (k,)
and a shift ``s = γ ⊙ b0 + β − c ⊙ b0`` (k,), so that ``h = base(x ⊙ a) ⊙ c + s``. A batch whose row ``i`` uses
adapter ``t_i`` therefore needs one base call and three gathers::

    h_i = base(x_i ⊙ a[t_i]) ⊙ c[t_i] + s[t_i]

Two pieces make the cost independent of the number of distinct adapters:

- :class:`AdapterRows`, built once per ``forward`` or ``generate`` call by the tuner and shared by every layer,
  holds the row → slot index (slot 0 is the base model, ``"__base__"``; slot ``j + 1`` is ``layout[j]``).
- :class:`AdapterBank`, one per layer, keeps the vectors of every loaded adapter stacked as ``a (K+1, nb, d)``,
  ``c, s (K+1, nb, k/nb)`` (``nb`` output blocks of a fused projection, 1 otherwise). It is rebuilt, vectorised,
  when the set of adapters changes, and a slot is recomputed when one of its parameters changed in place
  (an optimiser step, ``copy_``, loading weights: each bumps the tensor's ``_version``). Validation compares the
  version counters of the bank's parameters once per layer per call, so a ``generate`` call pays it once, not
  once per token. Not detected: replacing an adapter parameter's ``.data`` by hand.

With gradients enabled (training, or any forward that could be differentiated) the bank is not used: the
vectors of the adapters present in the batch are stacked with autograd, so each adapter is updated from its own
rows only (the gradient of a gather reaches only the gathered slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

# Functions here take a HUT layer (layer.py), typed as nn.Module: layer.py imports this module, not the reverse.

BASE_ADAPTER = "__base__"
Vectors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # a (n, nb, d), c (n, nb, ks), s (n, nb, ks)


@dataclass
class AdapterRows:
    """Which adapter each row of a mixed batch uses, resolved once per call.

    Args:
        names: One adapter name (or ``"__base__"``) per row, as the caller gave them.
        layout: The slot order of the layers' banks (slot ``j + 1`` is ``layout[j]``): the model's adapters.
        expand: ``generate`` repeats each row this many times (beams, returned sequences) before the decoder
            runs; a layer that sees ``len(names) * expand`` rows gets the repeated index, one that sees
            ``len(names)`` rows (an encoder) the original one.
    """

    names: tuple[str, ...]
    layout: tuple[str, ...]
    expand: int = 1
    joint: Optional[Any] = None  # a tenants.JointStep: rows take their tenant's vectors from its leaves (training)
    present: tuple[str, ...] = field(init=False)
    _slots: dict[tuple[str, int, torch.device], torch.Tensor] = field(init=False, default_factory=dict)
    validated: set[int] = field(init=False, default_factory=set)  # ids of layers whose bank was checked this call

    def __post_init__(self) -> None:
        self.present = tuple(dict.fromkeys(n for n in self.names if n != BASE_ADAPTER))

    def names_for(self, rows: int) -> list[str]:
        """The per-row names for a module that sees ``rows`` rows (for modules that take names, not slots).

        Raises:
            ValueError: ``rows`` is neither ``len(names)`` nor ``len(names) * expand``.
        """
        if rows == len(self.names):
            return list(self.names)
        if self.expand > 1 and rows == len(self.names) * self.expand:
            return [n for n in self.names for _ in range(self.expand)]
        raise ValueError(  # peft's text for the same mistake
            "Length of `adapter_names` should be the same as the number of inputs, but got "
            f"{len(self.names)} and {rows} respectively (one adapter name, or '__base__', per row)."
        )

    def slots(self, table: str, rows: int, device: torch.device) -> torch.Tensor:
        """Row → slot index (rows,) into the ``"layout"`` bank or the ``"present"`` stack, on ``device``."""
        key = (table, rows, device)
        if key not in self._slots:
            order = self.layout if table == "layout" else self.present
            position = {name: j + 1 for j, name in enumerate(order)}
            index = [position.get(name, 0) for name in self.names_for(rows)]
            self._slots[key] = torch.tensor(index, dtype=torch.long, device=device)
        return self._slots[key]


@dataclass
class AdapterBank:
    """One layer's stacked vectors of every adapter in ``layout``; see the module docstring.

    ``params`` lists the parameters the vectors were computed from (adapter by adapter, ``owner[i]`` names the
    adapter of ``params[i]``) and ``versions`` their version counters at that time: comparing the counters is
    the whole per-call check (about 0.2 µs a parameter).
    """

    layout: tuple[str, ...]
    vectors: Vectors
    params: list[torch.Tensor]
    owner: list[str]
    versions: list[int]
    context: tuple  # the base bias's storage and version, the adapters' dtype and device


def _context(layer: torch.nn.Module) -> tuple:
    """What, beside the adapters' own values, the bank depends on. Merging and unmerging reassign the base bias's
    ``.data`` (a new storage), ``model.to(...)`` moves the parameters' storage."""
    bias = layer._base_bias()
    first = next(iter(layer.hut_gamma.values()), None)
    where = None if first is None else (first.dtype, first.device)
    return (None,) if bias is None else (bias.data_ptr(), bias._version), where


def _build(layer: torch.nn.Module, layout: tuple[str, ...]) -> AdapterBank:
    params, owner = [], []
    for name in layout:
        for attr in layer.adapter_layer_names:
            if name in getattr(layer, attr):
                params.append(getattr(layer, attr)[name])
                owner.append(name)
    vectors = tuple(t.detach() for t in stack_vectors(layer, layout))
    return AdapterBank(layout, vectors, params, owner, [p._version for p in params], _context(layer))


def stack_vectors(layer: torch.nn.Module, names: Sequence[str], nb: Optional[int] = None) -> Vectors:
    """``(a, c, s)`` of ``names`` on ``layer``, stacked: slot 0 is the identity (the base model), slot ``j + 1`` is
    ``names[j]`` (the identity where this layer has no such adapter). Shapes (len(names) + 1, nb, ·).

    Differentiable: gradients reach each adapter's parameters through its slot only. The Python work is one
    ``torch.stack`` per parameter kind and per fused mask, not one set of operations per adapter.
    """
    here = [n for n in names if n in layer.hut_A]
    nb = nb or layer._num_blocks(here)
    d, ks = layer.in_features, layer.out_features // nb
    ref = layer.hut_gamma[here[0]] if here else layer.get_base_layer().weight
    dtype = ref.dtype if torch.is_floating_point(ref) else torch.float32
    kw = {"dtype": dtype, "device": ref.device}
    n = len(names) + 1
    a, c, s = torch.ones(n, nb, d, **kw), torch.ones(n, nb, ks, **kw), torch.zeros(n, nb, ks, **kw)
    position = {name: j + 1 for j, name in enumerate(names)}
    groups: dict[tuple[Optional[tuple[bool, ...]], tuple[int, ...]], list[str]] = {}
    for name in here:  # adapters stack together when their fused split and their M_A, M_B shapes (rank) agree
        groups.setdefault((layer.fused_mask.get(name), tuple(layer.hut_A[name].shape)), []).append(name)
    b0 = layer._base_bias()
    for (mask, _), group in groups.items():
        g = len(group)
        m_a = torch.stack([layer.hut_A[x] for x in group]).mean(dim=-1)  # (g, [m,] d)
        m_b = torch.stack([layer.hut_B[x] for x in group]).mean(dim=-2)  # (g, [m,] width)
        gamma = torch.stack([layer.hut_gamma[x] for x in group])
        beta = torch.stack([layer.hut_beta[x] if x in layer.hut_beta else torch.zeros_like(layer.hut_gamma[x])
                            for x in group])
        if mask is None:  # an ordinary adapter, seen through nb blocks as _block_vectors does
            blocks = torch.arange(nb, device=ref.device)
            m_a = m_a.unsqueeze(1).expand(g, nb, d)
            m_b, gamma, beta = (t.reshape(g, nb, ks) for t in (m_b, gamma, beta))
        else:
            if len(mask) != nb:
                raise ValueError(f"Adapters on one layer split it into {nb} and {len(mask)} blocks: use one split.")
            blocks = torch.tensor([j for j, m in enumerate(mask) if m], device=ref.device)
        cg = gamma * m_b  # the same operations, in the same order, as HUTLayer._composed for one adapter
        if b0 is None:
            sg = beta
        else:
            b0b = b0.detach().view(nb, ks)[blocks].to(gamma.dtype)
            sg = torch.addcmul(beta, gamma, b0b) - cg * b0b.to(cg.dtype)
        rows = torch.tensor([position[x] for x in group], device=ref.device).unsqueeze(1)
        cols = blocks.unsqueeze(0)
        a[rows, cols], c[rows, cols], s[rows, cols] = m_a, cg, sg
    return a, c, s


def bank_vectors(layer: torch.nn.Module, rows: AdapterRows) -> Vectors:
    """The layer's bank for ``rows.layout``, brought up to date once per layer per call; no autograd.

    Rebuilt whole when the layer's adapters were added or deleted (``update_layer`` and ``delete_adapter`` drop
    it), when the layout or the context (:func:`_context`) changed; otherwise only the slots of adapters whose
    parameters changed in place are recomputed.
    """
    bank: Optional[AdapterBank] = layer._hut_bank
    if bank is not None and id(layer) in rows.validated:
        return bank.vectors
    with torch.no_grad():
        if bank is None or bank.layout != rows.layout or bank.context != _context(layer):
            bank = _build(layer, rows.layout)
        else:
            versions = [p._version for p in bank.params]
            if versions != bank.versions:  # in-place updates since the bank was built: recompute those slots
                stale = list(dict.fromkeys(o for o, v, w in zip(bank.owner, versions, bank.versions) if v != w))
                nb = bank.vectors[0].shape[1]
                fresh = stack_vectors(layer, stale, nb=nb)
                position = {name: j + 1 for j, name in enumerate(bank.layout)}
                slots = torch.tensor([position[n] for n in stale], device=fresh[0].device)
                # out of place: a bank built under torch.inference_mode cannot be written in place outside it
                bank.vectors = tuple(t.index_copy(0, slots, v[1:]) for t, v in zip(bank.vectors, fresh))
                bank.versions = versions
            bank.layout = rows.layout
    layer._hut_bank = bank
    rows.validated.add(id(layer))
    return bank.vectors


def bank_nbytes(layer: torch.nn.Module) -> int:
    """Bytes held by the layer's bank (0 before the first mixed batch that used it)."""
    bank = layer._hut_bank
    return 0 if bank is None else sum(t.numel() * t.element_size() for t in bank.vectors)


def model_bank_nbytes(model: torch.nn.Module) -> int:
    """Bytes held by every HUT layer's bank in ``model``: the memory that mixed batches add to the adapters'.

    A HUT layer is recognised by its ``_hut_bank`` slot, so this module need not import layer.py (which imports it).
    """
    return sum(bank_nbytes(m) for m in model.modules() if hasattr(m, "_hut_bank"))
