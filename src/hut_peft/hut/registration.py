"""Register "hut" with peft at import time, so ``get_peft_model`` and ``PeftModel.from_pretrained`` know HUT."""

from __future__ import annotations

from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import register_peft_method

from .config import HUTConfig
from .model import HUTModel
from .peft_type import HUT_NAME, HUT_PEFT_TYPE


def register_hut() -> None:
    """Register HUT's config and tuner with peft (idempotent: a second import does nothing)."""
    if PEFT_TYPE_TO_TUNER_MAPPING.get(HUT_PEFT_TYPE) is HUTModel:
        return
    register_peft_method(name=HUT_NAME, config_cls=HUTConfig, model_cls=HUTModel, prefix="hut_")
