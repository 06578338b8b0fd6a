"""The HUT tuner: injects HUT layers into a transformers model, as peft's tuners do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.pytorch_utils import Conv1D

from .bank import BASE_ADAPTER, AdapterRows
from .config import HUTConfig
from .distributed import prepare_for_zero3
from .layer import HUTLayer, Linear
from .weighted import CombinationType
from .weighted import add_weighted_adapter as _add_weighted_adapter


def _inject_rows(module: nn.Module, args: tuple, kwargs: dict, rows: AdapterRows) -> tuple[tuple, dict]:
    kwargs["adapter_names"] = rows
    return args, kwargs


def _inject_row_names(module: nn.Module, args: tuple, kwargs: dict, rows: AdapterRows) -> tuple[tuple, dict]:
    """peft's wrappers (``modules_to_save``) take a list of names: the one matching the rows this module sees."""
    first = args[0] if args else next(iter(kwargs.values()), None)
    kwargs["adapter_names"] = rows.names_for(first.shape[0]) if isinstance(first, torch.Tensor) else list(rows.names)
    return args, kwargs


class HUTModel(BaseTuner):
    """Creates a HUT model from a transformers model (https://arxiv.org/abs/2409.13501).

    Use it through peft: ``get_peft_model(model, HUTConfig(...))``. Merging, unloading and adapter
    management come from peft's ``BaseTuner``; mixed-adapter batches (``adapter_names=[...]``, one name
    or ``"__base__"`` per row) are handled here, with one gathered set of vectors per row.
    """

    prefix: str = "hut_"
    tuner_layer_cls = HUTLayer
    # The paper adapts the attention query and value projections, as LoRA does.
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    def _create_and_replace(
        self,
        config: HUTConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        fused_mask = self._fused_mask(config, current_key)
        if isinstance(target, HUTLayer):
            target.update_layer(adapter_name, config, fused_mask=fused_mask)
            return
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        if not isinstance(base, (nn.Linear, Conv1D)):
            raise TypeError(
                f"HUT cannot adapt '{current_key}', a {type(base).__name__}: it supports torch.nn.Linear and "
                "transformers' Conv1D. Remove it from target_modules (or narrow a regex that matched it)."
            )
        new_module = Linear(target, adapter_name, config, fused_mask=fused_mask)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # a second adapter is not trainable until set_adapter
        self._replace_module(parent, target_name, new_module, target)

    @classmethod
    def _get_adapter_state_dict(
        cls, model: nn.Module, config: HUTConfig, adapter_name: str, state_dict: dict[str, torch.Tensor],
        unwanted_adapter_names: list[str],
    ) -> dict[str, torch.Tensor]:
        """peft's selection, plus HUT entries under nested FSDP1 units: peft strips ``_fsdp_wrapped_module.`` only at
        the start of a module name, but HUT's FSDP1 policy nests units (block → HUT layer → base layer), so the
        names have it in the middle while the full state dict's keys have it nowhere; peft then saves an empty
        adapter."""
        selected = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        prefixes = tuple(
            ".".join(part for part in name.split(".") if part != "_fsdp_wrapped_module") + f".{attr}."
            for name, module in model.named_modules() if isinstance(module, HUTLayer) and "_fsdp_wrapped_module" in name
            for attr in module.adapter_layer_names
        )
        if prefixes:
            selected.update({k: v for k, v in state_dict.items() if k.startswith(prefixes)})
        return selected

    def _post_injection_hook(self, model: nn.Module, config: HUTConfig, adapter_name: str) -> None:
        if is_deepspeed_zero3_enabled():
            prepare_for_zero3(model)  # HUT's vectors live in ParameterDicts, which ZeRO-3 alone would never gather

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        """Swap a module in place, as LoRA's tuner does. peft's generic version copies ``child.weight`` onto
        modules without a ``base_layer``, which breaks ``merge_and_unload`` on heads such as
        ``RobertaClassificationHead`` (no ``weight``); HUT layers already carry their device from the base."""
        setattr(parent, child_name, new_module)

    @staticmethod
    def _fused_mask(config: HUTConfig, key: str) -> list[bool] | None:
        for suffix, mask in (config.fused_slices or {}).items():
            if key == suffix or key.endswith("." + suffix):
                return list(mask)
        return None

    def inject_adapter(self, model: nn.Module, adapter_name: str, *args: Any, **kwargs: Any) -> None:
        try:
            super().inject_adapter(model, adapter_name, *args, **kwargs)
        except ValueError as err:
            if "not found in the base model" not in str(err):
                raise
            candidates = sorted(
                {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
            )
            targets = self.peft_config[adapter_name].target_modules
            shown = sorted(targets) if isinstance(targets, set) else targets
            raise ValueError(
                f"HUT target_modules={shown!r} "
                f"matched no module of this {type(model).__name__}. Layers HUT can adapt here are named: "
                f"{', '.join(candidates[:12])}{' ...' if len(candidates) > 12 else ''}. "
                "Pass some of these names as HUTConfig(target_modules=[...])."
            ) from err

    def add_weighted_adapter(
        self, adapters: list[str], weights: list[float], adapter_name: str, combination_type: CombinationType = "log"
    ) -> None:
        """Add ``adapter_name`` = a weighted combination of ``adapters``, as peft's LoRA and (IA)³ offer.

        ``"log"`` (default): scales combine as ``∏ m_i ** w_i`` (a sum of log-scales; ``[1, 1]`` multiplies them),
        shifts as ``Σ w_i β_i``. ``"linear"``: ``1 + Σ w_i (m_i − 1)``. hut/weighted.py and docs/method.md give
        the semantics and limits; errors are listed there.
        """
        _add_weighted_adapter(self, adapters, weights, adapter_name, combination_type)

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        """Route ``adapter_names`` (one per row) to every HUT layer and ``modules_to_save`` wrapper.

        The row → adapter index is resolved once here (``AdapterRows``) and shared by every layer. ``generate``
        repeats each row ``max(num_beams, num_return_sequences)`` times before decoding but runs an encoder on
        the original rows: each module gets the index that matches the rows it sees (as peft's LoRA gives the
        encoder the un-repeated names).

        In training mode each row's output depends only on its own adapter, so a mixed batch trains each adapter
        from its own rows (multi-task training; set the adapters trainable with ``set_requires_grad``).
        """
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        if not isinstance(adapter_names, (list, tuple)):
            raise TypeError(f"Got adapter names of type {type(adapter_names)}, expected a list of str (one per row).")
        known = set(self.peft_config)
        unknown = {n for n in adapter_names if n != BASE_ADAPTER} - known
        if unknown:
            raise ValueError(
                f"Trying to infer with non-existing adapter(s): {', '.join(sorted(unknown))}. Known: "
                f"{', '.join(sorted(known))}, or '{BASE_ADAPTER}' for the base model."
            )
        rows = AdapterRows(tuple(adapter_names), tuple(self.peft_config), expand=self._generation_expansion(kwargs))
        handles = []
        for module in self.modules():
            if isinstance(module, HUTLayer):
                handles.append(module.register_forward_pre_hook(partial(_inject_rows, rows=rows), with_kwargs=True))
            elif isinstance(module, AuxiliaryTrainingWrapper):
                hook = partial(_inject_row_names, rows=rows)
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _generation_expansion(self, kwargs: dict[str, Any]) -> int:
        """How many times ``generate`` repeats each row: ``max(num_beams, num_return_sequences)`` from the call's
        arguments, else its ``generation_config``, else the model's (as transformers resolves them)."""
        config = kwargs.get("generation_config") or getattr(self.model, "generation_config", None)
        beams = kwargs.get("num_beams") or getattr(config, "num_beams", None) or 1
        returned = kwargs.get("num_return_sequences") or getattr(config, "num_return_sequences", None) or 1
        return max(int(beams), int(returned))
