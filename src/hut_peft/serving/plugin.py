"""The vLLM plugin: ``register()`` runs in every vLLM process through the ``vllm.general_plugins`` entry point.

vLLM 0.32 has no extension point for new adapter types, so the plugin changes three things, each narrow and
checked (a vLLM whose internals moved fails here, loudly, instead of serving base-model outputs):

1. its list of LoRA linear wrappers (``vllm.lora.utils._all_lora_classes``): each swapped for its HUT subclass
   in place, so vLLM's matching order is kept (vllm_layers.py);
2. ``WorkerLoRAManager._load_adapter``: a folder whose ``peft_type`` is HUT goes to vllm_loader.py, any other
   folder to vLLM's own loader, untouched;
3. on CPU only, the packing of fused layers' weights (``dispatch_cpu_unquantized_gemm``): vLLM drops W0 of
   ``qkv_proj``/``gate_up_proj`` after packing it for oneDNN; with adapters enabled it is kept, because HUT
   scales each packed module's input on its own rows of W0 (about twice those layers' memory on CPU);
4. on CPU only, with ``HUT_PEFT_VLLM_COMPILE=1``: vLLM's CPU platform turns compilation off for any engine with
   adapters (its CPU LoRA ops do not compile); for an engine whose adapters are all HUT the plugin keeps it on
   (``CpuPlatform.check_and_update_config`` runs with the adapter config hidden), the wrappers take every branch
   every step, as on GPUs, and a LoRA folder is refused at load (a 400, not a dead engine). ``hut-peft serve``
   sets it when every adapter it starts with is HUT.

``HUT_PEFT_VLLM=0`` turns the plugin off; vLLM's ``VLLM_PLUGINS`` allow-list (name: ``hut``) applies as usual.
"""

from __future__ import annotations

import logging
import os
from typing import Any

SUPPORTED_VLLM = ("0.32.",)  # the versions whose internals the hooks below were written and tested against
logger = logging.getLogger("hut_peft.serving")
_registered = False


def register() -> None:
    """Install HUT adapters into vLLM (idempotent; imports vLLM only when vLLM calls it)."""
    global _registered
    if _registered or os.environ.get("HUT_PEFT_VLLM", "1") == "0":
        return
    import vllm

    if not vllm.__version__.startswith(SUPPORTED_VLLM):
        logger.warning("hut-peft's vLLM plugin is tested with vLLM %s; this is %s", "/".join(SUPPORTED_VLLM),
                       vllm.__version__)
    try:
        _swap_wrappers()
        _route_hut_folders()
        _keep_fused_weights_on_cpu()
        _compile_hut_engines_on_cpu()
    except (AttributeError, ImportError) as err:
        raise RuntimeError(f"hut-peft cannot install HUT adapters into vLLM {vllm.__version__} ({err}); use a "
                           f"supported vLLM ({', '.join(SUPPORTED_VLLM)}x) or set HUT_PEFT_VLLM=0") from err
    _registered = True


def _swap_wrappers() -> None:
    import vllm.lora.utils as lora_utils

    from .vllm_layers import HUT_SUBCLASS

    classes = lora_utils._all_lora_classes
    missing = [cls.__name__ for cls in HUT_SUBCLASS if cls not in classes]
    if missing:
        raise AttributeError(f"vllm.lora.utils._all_lora_classes lacks {missing}")
    lora_utils._all_lora_classes = tuple(HUT_SUBCLASS.get(cls, cls) for cls in classes)


def _route_hut_folders() -> None:
    from vllm.exceptions import LoRAAdapterNotFoundError
    from vllm.lora.utils import get_adapter_absolute_path
    from vllm.lora.worker_manager import WorkerLoRAManager

    from .folders import CONFIG_NAME, read_config
    from .vllm_layers import COMPILE_ENV, compiled_hut_only
    from .vllm_loader import load_hut_adapter

    vllm_load = WorkerLoRAManager._load_adapter

    def _load_adapter(self: Any, lora_request: Any) -> Any:
        path = get_adapter_absolute_path(lora_request.lora_path)
        if not os.path.isfile(os.path.join(path, CONFIG_NAME)):  # a hub name, or no adapter: vLLM's way
            return vllm_load(self, lora_request)
        if str(read_config(path).get("peft_type", "")).upper() != "HUT":  # a broken config: our ValueError
            if compiled_hut_only():
                raise ValueError(f"bad adapter {path}: not a HUT adapter, and this server compiles its model for HUT "
                                 f"adapters only (vLLM's CPU LoRA ops do not compile); restart it with {COMPILE_ENV}=0 "
                                 "to serve LoRA adapters too (eager)")
            return vllm_load(self, lora_request)
        try:
            return load_hut_adapter(self, lora_request, path)
        except FileNotFoundError as err:  # vLLM's way: the API answers 404
            raise LoRAAdapterNotFoundError(lora_request.lora_name, lora_request.lora_path) from err

    _load_adapter.__wrapped__ = vllm_load  # type: ignore[attr-defined]
    WorkerLoRAManager._load_adapter = _load_adapter


def _keep_fused_weights_on_cpu() -> None:
    import vllm.model_executor.layers.utils as layer_utils
    from vllm.model_executor.layers.linear import MergedColumnParallelLinear, QKVParallelLinear

    pack = layer_utils.dispatch_cpu_unquantized_gemm

    def dispatch_cpu_unquantized_gemm(layer: Any, remove_weight: bool) -> None:
        if remove_weight and isinstance(layer, (MergedColumnParallelLinear, QKVParallelLinear)) and _adapters_on():
            remove_weight = False
        pack(layer, remove_weight)

    dispatch_cpu_unquantized_gemm.__wrapped__ = pack  # type: ignore[attr-defined]
    layer_utils.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm


def _adapters_on() -> bool:
    """Whether the engine being built serves adapters (True when that cannot be told: keeping W0 is safe)."""
    try:
        from vllm.config import get_current_vllm_config

        return get_current_vllm_config().lora_config is not None
    except Exception:  # no config in scope
        return True


def _compile_hut_engines_on_cpu() -> None:
    from vllm.platforms.cpu import CpuPlatform

    from .vllm_layers import compiled_hut_only

    check = CpuPlatform.check_and_update_config.__func__

    def check_and_update_config(cls: Any, vllm_config: Any) -> None:
        lora_config = vllm_config.lora_config
        if lora_config is None or not compiled_hut_only():
            return check(cls, vllm_config)
        vllm_config.lora_config = None  # its one use there: compilation off for adapter engines
        try:
            check(cls, vllm_config)
        finally:
            vllm_config.lora_config = lora_config

    check_and_update_config.__wrapped__ = check  # type: ignore[attr-defined]
    CpuPlatform.check_and_update_config = classmethod(check_and_update_config)
