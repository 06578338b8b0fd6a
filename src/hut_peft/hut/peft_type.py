"""The ``PeftType.HUT`` member that peft needs before it can know a method called "hut".

peft's ``register_peft_method`` (peft >= 0.15) accepts only names that are already members of the
``PeftType`` str-Enum, and peft has no plug-in hook. A str-Enum cannot be subclassed, so we add the
member the way ``Enum`` itself builds members. This is the one place that touches peft's internals; registration.py
then registers the config and tuner under that name.
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
