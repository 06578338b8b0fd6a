"""Register "hut" with peft at import time.

peft's ``register_peft_method`` (peft >= 0.15) accepts only names that are already members of the
``PeftType`` str-Enum, and peft has no plug-in hook. A str-Enum cannot be subclassed, so we add the
member the way ``Enum`` itself builds members. This is the one place that touches peft's internals.
"""

from __future__ import annotations

from peft.utils import PeftType

HUT_NAME = "hut"


def add_peft_type_member(name: str) -> PeftType:
    """Return ``PeftType[name]``, adding the member first if it does not exist (idempotent)."""
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType  # type: ignore[attr-defined]
    member.__init__(name)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    type.__setattr__(PeftType, name, member)
    return member


HUT_PEFT_TYPE = add_peft_type_member(HUT_NAME.upper())


def register_hut() -> None:
    """Register HUT's config and tuner with peft (idempotent: a second import does nothing)."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    from .config import HUTConfig
    from .model import HUTModel

    if PEFT_TYPE_TO_TUNER_MAPPING.get(HUT_PEFT_TYPE) is HUTModel:
        return
    register_peft_method(name=HUT_NAME, config_cls=HUTConfig, model_cls=HUTModel, prefix="hut_")
