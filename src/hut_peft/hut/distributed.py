"""HUT under sharded training: an FSDP1 wrap policy, ZeRO-3 leaf modules, and merging a ZeRO-3-sharded model.

- **FSDP1 with** ``use_orig_params=False`` flattens each wrapped unit's parameters into one tensor, which must be
  all trainable or all frozen. HUT's trainable vectors sit beside the frozen base layer, so a HUT layer is a unit
  of its own and its ``base_layer`` a nested unit (:func:`fsdp_auto_wrap_policy`); the layer then reads nothing
  from the base outside the base's forward (``HUTLayer._own_unit_forward``).
- **DeepSpeed ZeRO-3** partitions every parameter and gathers a module's own parameters only around that module's
  forward. A HUT layer reads its vectors from ``ParameterDict`` children (never called) and, on a fused projection,
  the base weight: :func:`prepare_for_zero3` makes each HUT layer a ZeRO-3 leaf, gathered whole for its forward and backward.
- **Merging** reads ``W0``: under ZeRO-3 it must be gathered first (:func:`merge_adapters`, :func:`merged_state_dict`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from .layer import HUTLayer, HUTLinear


def fsdp_auto_wrap_policy(model: nn.Module) -> Callable[..., bool]:
    """An FSDP1 ``auto_wrap_policy`` for HUT, passed as peft's ``fsdp_auto_wrap_policy(model)`` is.

    Units: the model's transformer blocks (its ``_no_split_modules``), every HUT layer, and every HUT layer's
    ``base_layer``. Each unit's own parameters are then all trainable (the HUT vectors) or all frozen, which
    ``use_orig_params=False`` requires; it works with ``use_orig_params=True`` too.

    Raises:
        ValueError: the model has no HUT layers.
    """
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    layers = [m for m in model.modules() if isinstance(m, HUTLayer)]
    if not layers:
        raise ValueError("fsdp_auto_wrap_policy found no HUT layers: call get_peft_model(model, HUTConfig(...)) first.")
    bases = {id(layer.base_layer) for layer in layers}
    names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = tuple({type(m) for m in model.modules() if type(m).__name__ in names})

    def is_unit(module: nn.Module) -> bool:
        return isinstance(module, HUTLayer) or id(module) in bases or (bool(blocks) and isinstance(module, blocks))

    return functools.partial(lambda_auto_wrap_policy, lambda_fn=is_unit)


def prepare_for_zero3(model: nn.Module) -> None:
    """Make every HUT layer a DeepSpeed ZeRO-3 leaf module, and the input embeddings' output require gradients.

    A leaf is gathered whole (vectors and base) around its forward and its backward. ZeRO-3 releases a module's
    parameters when the gradient with respect to its inputs is done; where no input needs one (the first block under
    frozen embeddings) that fires before the HUT vectors' own gradients arrive, which then meet released
    (size-0) parameters in ``AccumulateGrad``: so the embeddings' output requires gradients, as transformers arranges
    for gradient checkpointing. Call it before ``deepspeed.initialize`` (or the Trainer / accelerate ``prepare``);
    HUTModel calls it after injecting an adapter when transformers reports ZeRO-3 (``is_deepspeed_zero3_enabled()``).
    """
    from deepspeed.utils import set_z3_leaf_modules

    set_z3_leaf_modules(model, [HUTLinear])
    if hasattr(model, "enable_input_require_grads") and not getattr(model, "_require_grads_hooks", None):
        model.enable_input_require_grads()


def _is_zero3(params: Iterable[torch.Tensor]) -> bool:
    return any(hasattr(p, "ds_id") for p in params)


@contextlib.contextmanager
def gathered(params: list[torch.Tensor], modifier_rank: int | None = None) -> Iterator[None]:
    """``params`` whole inside the block under ZeRO-3 (a no-op otherwise).

    With ``modifier_rank`` set, what that rank writes is kept (re-partitioned on exit); without it, changes are lost.
    """
    if not _is_zero3(params):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank):
        yield


def merge_adapters(model: nn.Module) -> None:
    """Merge the active HUT adapters in place, gathering each layer's ZeRO-3 shards first; every rank must call it.

    Each rank computes the same merge; rank 0's result is re-partitioned.
    """
    for module in model.modules():
        if isinstance(module, HUTLayer):
            with gathered(list(module.parameters()), modifier_rank=0):
                module.merge()


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's state dict with the HUT adapters merged, full tensors on the CPU, under the base model's own
    keys (no ``base_layer``, no ``hut_`` entries): what ``merge_and_unload().state_dict()`` gives on one process.

    Merges ``model`` in place first (:func:`merge_adapters`); every rank must call it (ZeRO-3 gathers collectively).

    Raises:
        ValueError: the model is wrapped by FSDP (its weights exist whole only inside each unit's forward).
    """
    if any(hasattr(m, "_fsdp_wrapped_module") for m in model.modules()) or any(
        type(p).__name__ == "DTensor" for p in model.parameters()
    ):
        raise ValueError(
            "merged_state_dict cannot merge an FSDP-sharded model in place. Save the adapter (Trainer.save_model), "
            "then merge in one process: PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()."
        )
    merge_adapters(model)
    prefix = "base_model.model."
    persistent = set(model.state_dict())  # keys only: under ZeRO-3 its tensors are the empty shards
    out: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        if not own:
            continue
        with gathered([p for _, p in module.named_parameters(recurse=False)]):
            for name, tensor in own:
                key = f"{module_name}.{name}" if module_name else name
                if "hut_" in key or key not in persistent:
                    continue
                key = key.removeprefix(prefix).replace(".base_layer.", ".")
                out[key] = tensor.detach().cpu().clone()
    return out
