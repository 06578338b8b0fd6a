"""Load a saved HUT adapter folder inside a vLLM worker, as the LoRA model vLLM's adapter manager expects.

vLLM's own loader reads ``adapter_config.json`` as a LoRA config and every tensor as ``lora_A``/``lora_B``; a HUT
folder fails there (``Missing required configuration fields: {'lora_alpha'}``). ``load_hut_adapter`` takes its
place for folders whose ``peft_type`` is HUT (plugin.py routes them): it checks every tensor against the layer
it adapts in the running model, and returns each module's vectors packed as a rank-1 "LoRA" (vectors.encode),
so vLLM's packing into fused layers, its slots, its LRU and its tensor-parallel slicing apply unchanged.
A ``ValueError`` raised here reaches the client as vLLM's usual adapter error, and the server keeps serving.
"""

from __future__ import annotations

from typing import Any

from vllm.lora.lora_model import LoRAModel
from vllm.lora.lora_weights import LoRALayerWeights

from .folders import check_weights
from .vectors import encode, module_vectors, read_adapter
from .vllm_layers import HUTLinearMixin


class HUTLoRAModel(LoRAModel):
    """A HUT adapter inside vLLM: each module's vectors as a rank-1 ``LoRALayerWeights`` (vectors.encode)."""


def layer_sizes(adapter_manager: Any) -> dict[str, tuple[int, int]]:
    """``{peft module name: (in, out)}`` for every layer the running model wraps for adapters, at full size.

    A fused layer (``qkv_proj``) is listed under the names of the modules packed into it (``q_proj``, ...),
    which are the names peft saves.
    """
    sizes: dict[str, tuple[int, int]] = {}
    for name, module in adapter_manager.modules.items():
        if not isinstance(module, HUTLinearMixin):
            continue
        base = module.base_layer
        children = adapter_manager.packed_modules.get(name)
        if children and hasattr(base, "total_num_kv_heads"):  # q, k, v: the full sizes (not TP's replicas)
            v_head = getattr(base, "v_head_size", base.head_size)
            outs = [base.total_num_heads * base.head_size, base.total_num_kv_heads * base.head_size,
                    base.total_num_kv_heads * v_head]
        else:
            outs = list(getattr(base, "output_sizes", None) or [base.output_size])
        if children and len(children) == len(outs):
            sizes.update({child: (base.input_size, out) for child, out in zip(children, outs)})
        else:
            sizes[name] = (base.input_size, base.output_size)
    return sizes


def load_hut_adapter(worker_manager: Any, lora_request: Any, path: str) -> HUTLoRAModel:
    """The HUT adapter at ``path`` for vLLM's ``WorkerLoRAManager`` (in place of its ``_load_adapter``).

    Raises:
        FileNotFoundError: the folder has no weights file (vLLM answers 404).
        ValueError: a weights file that is not whole, a setting vLLM cannot serve, a module this model does not
            adapt, or a tensor of the wrong shape; the message names the folder, the tensor and both shapes.
    """
    check_weights(path)  # a truncated file: our message, not safetensors' (which names no folder)
    config, modules = read_adapter(path)
    sizes = layer_sizes(worker_manager._adapter_manager)
    mapper = getattr(worker_manager._adapter_manager.model, "hf_to_vllm_mapper", None)
    mapper = mapper.get_rename_mapper() if mapper is not None else None
    dtype = worker_manager.lora_config.lora_dtype
    loras: dict[str, LoRALayerWeights] = {}
    for module, tensors in modules.items():
        name = mapper._map_name(module) if mapper is not None else module
        if name not in sizes:
            served = sorted({n.rsplit(".", 1)[-1] for n in sizes})
            raise ValueError(f"HUT adapter {path}: {module} is not a layer this model serves with adapters "
                             f"(it adapts {', '.join(served) or 'none'}): an adapter for another model, or a "
                             "--lora-target-modules that leaves it out?")
        d, k = sizes[name]
        vectors = module_vectors(tensors, module, d, k, shift=bool(config.get("shift", True)), where=str(path))
        lora_a, lora_b = encode(vectors, dtype)
        loras[name] = LoRALayerWeights(name, rank=1, lora_alpha=1, lora_a=lora_a, lora_b=lora_b, scaling=1.0)
    return HUTLoRAModel(lora_request.lora_int_id, rank=1, loras=loras)
