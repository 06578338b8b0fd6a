"""hut-peft: HUT (Hadamard Updated Transformation, arXiv 2409.13501) for peft and transformers.

Importing this package registers the method "hut" with peft, so ``get_peft_model(model, HUTConfig(...))``
and ``PeftModel.from_pretrained(model, path)`` work for HUT adapters like for any built-in method.
"""

from .hut import HUT_PEFT_TYPE, HUTConfig, HUTLayer, HUTModel, load_adapters
from .hut.tenants import add_adapters

__version__ = "0.2.0"
__all__ = ["HUTConfig", "HUTLayer", "HUTModel", "HUT_PEFT_TYPE", "add_adapters", "load_adapters", "__version__"]
