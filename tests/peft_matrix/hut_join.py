"""HUT's rows in peft's generic test matrix, and the call that adds them.

peft adds a method to its generic tests by listing it in the parametrised case lists (``TEST_CASES`` of
``test_custom_models.py``, ``ALL_CONFIGS`` of the decoder / encoder-decoder / feature-extraction files,
and some inline ``@pytest.mark.parametrize`` lists). This module holds HUT's rows for each of those lists,
written beside the LoRA and (IA)³ rows they mirror, and ``join(module)``, which the build appends to each
copied test file: it adds the rows in place (the parametrize marks hold the same list objects, so pytest
then expands them) and drops the other methods' rows, so that only HUT's tests are collected.

Copied into the generated test folder beside peft's files; it imports nothing from them.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from peft.config import PeftConfig

from hut_peft import HUTConfig

# ``init="perturbed"`` is HUT's non-identity init, what peft's ``set_init_weights_false`` asks of each method.
P = {"init": "perturbed", "init_std": 0.2}  # as inject.py's set_init_weights_false edit

# test_custom_models.py: TEST_CASES rows (name, model id of MockTransformerWrapper, config class, kwargs).
# HUT adapts nn.Linear and transformers' Conv1D; peft's Conv2d/Conv3d/MHA/Embedding models are not for HUT.
CUSTOM_CASES = [
    ("Vanilla MLP 1 HUT", "MLP", HUTConfig, {"target_modules": "lin0"}),
    ("Vanilla MLP 2 HUT", "MLP", HUTConfig, {"target_modules": ["lin0"]}),
    ("Vanilla MLP 3 HUT", "MLP", HUTConfig, {"target_modules": ["lin1"]}),
    ("Vanilla MLP 4 HUT", "MLP", HUTConfig, {"target_modules": ["lin0", "lin1"]}),
    ("Vanilla MLP 5 HUT", "MLP", HUTConfig, {"target_modules": ["lin0"], "modules_to_save": ["lin1"]}),
    ("Vanilla MLP 6 HUT r1", "MLP", HUTConfig, {"target_modules": ["lin0", "lin1"], "r": 1}),
    ("Vanilla MLP 7 HUT no shift", "MLP", HUTConfig, {"target_modules": ["lin0", "lin1"], "shift": False}),
    ("Vanilla MLP 8 HUT regex", "MLP", HUTConfig, {"target_modules": r".*lin\d"}),
    ("Vanilla MLP 9 HUT exclude", "MLP", HUTConfig, {"target_modules": ["lin0", "lin1"], "exclude_modules": ["lin1"]}),
    ("MLP LayerNorm 1 HUT", "MLP_LayerNorm", HUTConfig, {"target_modules": ["lin0", "lin1"]}),
    ("MLP2 1 HUT", "MLP2", HUTConfig, {"target_modules": ["lin0"], "modules_to_save": ["lin1"]}),
    ("transformers Conv1D 1 HUT", "EmbConv1D", HUTConfig, {"target_modules": ["conv1d"]}),
    ("transformers Conv1D 2 HUT", "EmbConv1D", HUTConfig, {"target_modules": ["conv1d", "lin0"]}),
    ("transformers Conv1D 3 HUT", "EmbConv1D", HUTConfig, {"target_modules": ["conv1d"], "modules_to_save": ["lin0"]}),
]

# test_custom_models.py: MULTIPLE_ACTIVE_ADAPTERS_TEST_CASES rows; the model is peft's MLP (bias=True for HUT).
MULTI_ACTIVE_CASES = [
    ("HUT Same", "hut", HUTConfig, {"target_modules": ["lin0"], **P}, {"target_modules": ["lin0"], **P}),
    ("HUT Different", "hut", HUTConfig, {"target_modules": ["lin0"], **P}, {"target_modules": ["lin1"], **P}),
]


def _mixed(**kw: Any) -> tuple[HUTConfig, HUTConfig]:
    return HUTConfig(**P, **kw), HUTConfig(**P, r=4, **kw)


# test_custom_models.py: MIXED_ADAPTER_TEST_CASES and the inline lists of TestMixedAdapterBatches.
MIXED_CASES = [("HUT mixed adapter", *_mixed(target_modules=["lin0"]))]
INLINE_CASES: dict[tuple[str, str, str], list[tuple]] = {
    ("TestMixedAdapterBatches", "test_mixed_adapter_batches_different_target_layers", "test_name, config0, config1"): [
        ("HUT mixed adapter with different target layers",
         HUTConfig(target_modules=["lin0"], **P), HUTConfig(target_modules=["lin1"], **P)),
    ],
    ("TestMixedAdapterBatches", "test_mixed_adapter_batches_multiple_modules_to_save", "test_name, config0, config1"): [
        ("HUT mixed adapter with modules to save", *_mixed(target_modules=["lin0"], modules_to_save=["lin1"])),
    ],
    ("TestMixedAdapterBatches", "test_mixed_adapter_batches_unsupported_layer_raises", "test_name, config0, config1"): [
        ("HUT mixed adapter with unsupported layer", *_mixed(target_modules=["lin0"], modules_to_save=["gru"])),
    ],
    ("TestMixedAdapterBatches", "test_mixed_adapter_batches_partly_overlapping_target_layers",
     "test_name, config0, config1"): [
        ("HUT mixed adapter with overlapping layers",
         HUTConfig(target_modules=["lin0"], **P), HUTConfig(target_modules=["lin0", "lin1"], **P)),
    ],
    ("TestMixedAdapterBatches", "test_mixed_adapter_batches_lora_conv1d_emb", "test_name, config0, config1"): [
        ("HUT mixed adapter with conv1d", *_mixed(target_modules=["conv1d", "lin0"])),
    ],
    ("TestMixedAdapterBatches", "test_mixed_adapter_batches_lora_conv1d_emb_multiple_modules_to_save",
     "test_name, config0, config1"): [
        ("HUT mixed adapter with conv1d and modules to save", *_mixed(target_modules=["conv1d"], modules_to_save=["lin0"])),
    ],
    ("TestMixedAdapterBatches", "test_mixed_adapter_batches_lora_wrong_adapter_name_raises", "test_name, config"): [
        ("HUT mixed batch wrong adapter name", HUTConfig(target_modules=["lin0"], **P)),
    ],
    ("TestPeftCustomModel", "test_multiple_adapters_mixed_modules_to_save", "config_cls"): [HUTConfig],
    ("TestPeftCustomModel", "test_multiple_adapters_mixed_modules_to_save_order_switched", "config_cls"): [HUTConfig],
    ("TestPeftCustomModel", "test_adapter_name_makes_no_difference", "config0"): [
        HUTConfig(target_modules=["lin0"], **P)
    ],
}


def _all_configs(task_type: str) -> list[Any]:
    """ALL_CONFIGS rows: HUT as the paper configures it (q and v, r = 8, shift on) and the bias-free setting."""
    return [
        pytest.param(HUTConfig, {"task_type": task_type, "target_modules": None}, id="HUT-r8"),
        pytest.param(HUTConfig, {"task_type": task_type, "target_modules": None, "r": 2, "shift": False},
                     id="HUT-r2-noshift"),
    ]


def _is_peft_config(value: Any) -> bool:
    return isinstance(value, PeftConfig) or (isinstance(value, type) and issubclass(value, PeftConfig))


def is_hut(value: Any) -> bool:
    """True for HUTConfig, a HUTConfig instance, or a parametrize row that holds one."""
    if isinstance(value, (tuple, list)):
        return any(is_hut(v) for v in value)
    return value is HUTConfig or isinstance(value, HUTConfig)


def _foreign(row: Any) -> bool:
    """A row that names another peft method (and not HUT)."""
    values = row if isinstance(row, (tuple, list)) else (row,)
    return any(_is_peft_config(v) for v in values) and not is_hut(row)


def _parametrize_list(func: Any, argnames: str) -> list:
    for mark in getattr(func, "pytestmark", []):
        if mark.name == "parametrize" and mark.args[0] == argnames:
            return mark.args[1]
    raise LookupError(f"{func.__qualname__} has no @pytest.mark.parametrize({argnames!r}, ...): update hut_join.py")


def _add_rows(module: ModuleType) -> None:
    name = module.__name__.rsplit(".", 1)[-1]
    g = vars(module)
    if name == "test_custom_models":
        g["TEST_CASES"].extend(CUSTOM_CASES)
        g["ALL_PEFT_CONFIG_CLASSES"].append(HUTConfig)
        g["MULTIPLE_ACTIVE_ADAPTERS_TEST_CASES"].extend(MULTI_ACTIVE_CASES)
        g["MIXED_ADAPTER_TEST_CASES"].extend(MIXED_CASES)
        for (cls, test, argnames), rows in INLINE_CASES.items():
            _parametrize_list(getattr(g[cls], test), argnames).extend(rows)
    elif name == "test_decoder_models":
        g["ALL_CONFIGS"].extend(_all_configs("CAUSAL_LM"))
    elif name == "test_encoder_decoder_models":
        g["ALL_CONFIGS"].extend(_all_configs("SEQ_2_SEQ_LM"))
    elif name == "test_feature_extraction_models":
        g["ALL_CONFIGS"].extend(_all_configs("FEATURE_EXTRACTION"))
    else:
        raise ValueError(f"hut_join does not know peft's {name}")


def _drop_other_methods(module: ModuleType) -> None:
    """Filter every parametrize list of the module's test classes in place (shared lists included)."""
    for obj in vars(module).values():
        if not (isinstance(obj, type) and obj.__name__.startswith("Test")):
            continue
        for attr in vars(obj).values():
            for mark in getattr(attr, "pytestmark", []):
                if mark.name == "parametrize" and isinstance(mark.args[1], list):
                    mark.args[1][:] = [row for row in mark.args[1] if not _foreign(row)]


def join(module: ModuleType) -> None:
    """Add HUT's rows to one of peft's test modules and drop the other methods' rows."""
    _add_rows(module)
    _drop_other_methods(module)
