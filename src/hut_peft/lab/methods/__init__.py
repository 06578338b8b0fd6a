"""One registry of fine-tuning methods: HUT and every baseline the paper compares against.

``apply_method(name, model, task_type=..., preset=..., **options)`` returns a model ready to train;
``METHODS`` lists them (``hut-peft methods`` prints it); docs/methods.md says where each comes from.
"""

from .arch import resolve_targets
from .checkpoint import load_trainable, save_trainable
from .registry import METHODS, Method, apply_method, count_parameters, get_method, merge_method

__all__ = [
    "METHODS", "Method", "apply_method", "count_parameters", "get_method", "load_trainable", "merge_method",
    "resolve_targets", "save_trainable",
]
