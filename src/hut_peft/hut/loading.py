"""Loading many saved HUT adapters into one model, in time linear in their number.

peft's ``load_adapter`` walks every module and parameter of the model on each call (injection, the trainability
snapshot, state-dict filtering), so each adapter costs more than the one before: the first 255 MiniLM adapters
took 18 s, 1,024 took 219 s (issue 12). Saved adapters that target the same modules as one already loaded skip
that walk: their tensors go straight into the HUT layers that the first one created (``add_saved_adapter``), so
each costs the same whatever number is loaded. The first adapter of each distinct targeting, and adapters with
``modules_to_save`` (a task head per tenant), go through peft's ``load_adapter``.

Usage::

    model = get_peft_model(base, HUTConfig(...))          # or PeftModel.from_pretrained(base, first_adapter)
    names = load_adapters(model, "adapters/")             # every subfolder saved with save_pretrained
    model.eval()
    out = model(input_ids, adapter_names=[names[3], names[0], "__base__"])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from peft import PeftModel
from peft.utils import load_peft_weights

from .config import HUTConfig
from .layer import HUTLayer
from .model import HUTModel
from .peft_type import HUT_PEFT_TYPE

# The fields that decide which modules an adapter occupies (and how a fused one is split).
TARGETING_FIELDS = ("target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "fused_slices")
ADAPTER_CONFIG = "adapter_config.json"
Source = Union[str, Path, Mapping[str, Union[str, Path]]]


def find_saved_adapters(folder: Union[str, Path]) -> dict[str, Path]:
    """Adapter name → folder for every subfolder of ``folder`` that holds an ``adapter_config.json``, sorted by
    name (a folder that is itself a saved adapter gives one entry, named after it).

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no saved adapter.
    """
    root = Path(folder)
    if (root / ADAPTER_CONFIG).is_file():
        return {root.name: root}
    found = {p.name: p for p in sorted(root.iterdir()) if (p / ADAPTER_CONFIG).is_file()} if root.is_dir() else {}
    if not found:
        raise FileNotFoundError(
            f"No saved adapter under {str(root)!r}: expected subfolders written by save_pretrained, each with an "
            f"{ADAPTER_CONFIG} and its weights."
        )
    return found


def _targeting(config: Any) -> tuple:
    """A hashable summary of the fields in ``TARGETING_FIELDS``."""

    def norm(value: Any) -> Any:
        if isinstance(value, (set, frozenset, list, tuple)):
            return tuple(sorted(norm(v) for v in value)) if isinstance(value, (set, frozenset)) else tuple(value)
        if isinstance(value, dict):
            return tuple(sorted((k, norm(v)) for k, v in value.items()))
        return value

    return tuple(norm(getattr(config, name, None)) for name in TARGETING_FIELDS)


def load_adapters(model: PeftModel, adapters: Source, is_trainable: bool = False) -> list[str]:
    """Load many saved HUT adapters into ``model``; the time grows linearly with their number.

    Args:
        model: A ``PeftModel`` holding at least one HUT adapter (``get_peft_model`` or ``PeftModel.from_pretrained``).
        adapters: A folder whose subfolders are saved adapters (named after the subfolders), one saved adapter
            folder, or a mapping adapter name → folder.
        is_trainable: Load the adapters trainable (``requires_grad``), as peft's ``load_adapter`` does.

    Returns:
        The names loaded, in loading order.

    Raises:
        TypeError: ``model`` is not a peft model with HUT adapters.
        ValueError: A name is already loaded, a saved adapter is not a HUT adapter, or a tensor is missing, does not
            fit, or belongs to no module the adapter targets.
    """
    if not (isinstance(model, PeftModel) and isinstance(model.base_model, HUTModel)):
        raise TypeError(
            f"load_adapters needs a PeftModel with HUT adapters, got a {type(model).__name__}: create it with "
            "get_peft_model(base, HUTConfig(...)) or PeftModel.from_pretrained(base, a_saved_hut_adapter) first."
        )
    sources = dict(adapters) if isinstance(adapters, Mapping) else find_saved_adapters(adapters)
    clash = sorted(set(sources) & set(model.peft_config))
    if clash:
        raise ValueError(f"Adapter with name {clash[0]} already exists.")  # peft's text for the same mistake
    templates = {_targeting(config): name for name, config in model.peft_config.items()
                 if not getattr(config, "modules_to_save", None)}
    layers = _hut_layers(model)
    for name, path in sources.items():
        config = HUTConfig.from_pretrained(str(path))
        if config.peft_type != HUT_PEFT_TYPE:
            raise ValueError(f"{str(path)!r} holds a {config.peft_type} adapter, not a HUT one.")
        config.inference_mode = not is_trainable
        key = _targeting(config)
        like = templates.get(key)
        if like is None or config.modules_to_save:
            model.load_adapter(str(path), adapter_name=name, is_trainable=is_trainable)
            if not config.modules_to_save:
                templates[key] = name
                layers = _hut_layers(model)  # this targeting may have wrapped new modules
            continue
        weights = load_peft_weights(str(path), device="cpu")
        per_layer = [(layer, {attr: weights.pop(f"{prefix}.{attr}") for attr in layer.adapter_layer_names
                              if f"{prefix}.{attr}" in weights})
                     for prefix, layer in layers if like in layer.hut_A]
        if weights:
            extra = sorted(weights)
            raise ValueError(
                f"The saved HUT adapter {str(path)!r} has tensors for modules it does not target here: "
                f"{', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}. Was it saved from another base model?"
            )
        try:
            for layer, values in per_layer:
                layer.add_saved_adapter(name, config, values, like, requires_grad=is_trainable)
        except ValueError:
            for layer, _ in per_layer:  # leave the model as it was
                if name in layer.hut_A:
                    layer.delete_adapter(name)
            raise
        model.peft_config[name] = config
    return list(sources)


def _hut_layers(model: PeftModel) -> list[tuple[str, HUTLayer]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, HUTLayer)]
