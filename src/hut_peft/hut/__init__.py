"""HUT as a peft tuner: config, layer and model. Importing this package registers "hut" with peft."""

from .config import HUTConfig
from .layer import HUTLayer, HUTLinear, Linear
from .loading import find_saved_adapters, load_adapters
from .model import HUTModel
from .peft_type import HUT_PEFT_TYPE
from .registration import register_hut

register_hut()

__all__ = [
    "HUTConfig", "HUTLayer", "HUTLinear", "HUTModel", "Linear", "HUT_PEFT_TYPE", "find_saved_adapters", "load_adapters",
    "register_hut",
]
