"""One registry of fine-tuning methods (HUT and every baseline the paper compares against)."""

from .arch import resolve_targets
from .registry import METHODS, Method, apply_method, count_parameters, get_method

__all__ = ["METHODS", "Method", "apply_method", "count_parameters", "get_method", "resolve_targets"]
