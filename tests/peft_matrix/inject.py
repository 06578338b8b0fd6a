"""The edits that add HUT to peft's generic tests, applied to copies of the files from peft's sdist.

Two kinds, both as peft itself would make them when a new method joins its matrix:

- ``EDITS``: exact-text replacements where peft's helpers list the methods a test applies to (for example
  ``if config_cls not in (LoraConfig, RoadConfig): pytest.skip(...)`` before the mixed-batch test). Each must
  match exactly ``count`` times, or the build stops and names the edit: peft changed, and this file needs a look.
- ``JOIN``: two lines appended to each test module, which call ``hut_join.join`` to add HUT's rows to the
  parametrised case lists (see hut_join.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMPORT = "from hut_peft import HUTConfig  # added by hut-peft\n"
JOIN = (
    "\n\n# added by hut-peft: HUT joins the matrix (tests/peft_matrix/hut_join.py)\n"
    "import sys as _sys  # noqa: E402\n\n"
    "from .hut_join import join as _hut_join  # noqa: E402\n\n"
    "_hut_join(_sys.modules[__name__])\n"
)
TEST_MODULES = (
    "test_custom_models.py",
    "test_decoder_models.py",
    "test_encoder_decoder_models.py",
    "test_feature_extraction_models.py",
)
HELPERS = ("testing_common.py", "testing_utils.py")


@dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str
    why: str
    count: int = 1


EDITS: tuple[Edit, ...] = (
    Edit("testing_utils.py", "from peft import (\n", IMPORT + "from peft import (\n", "HUTConfig is named below"),
    Edit(
        "testing_utils.py",
        "    elif config_cls == TinyLoraConfig:\n",
        '    elif config_cls == HUTConfig:\n        kwargs.update(init="perturbed", init_std=0.2)\n'
        "    elif config_cls == TinyLoraConfig:\n",
        "set_init_weights_false: HUT's non-identity init is init='perturbed' (it has no init_weights flag); std 0.2, "
        "not the default 0.02, because peft's tests then scale adapter parameters by 10 'to make them stronger', "
        "which for a multiplicative adapter is a near-uniform scale that Gemma's and BART's norms absorb "
        "((IA)³'s non-identity init in peft is N(0, 1))",
    ),
    Edit("testing_common.py", "from peft import (\n", IMPORT + "from peft import (\n", "HUTConfig is named below"),
    Edit(
        "testing_common.py",
        "    if not isinstance(config, (IA3Config, LoraConfig)):\n",
        "    if not isinstance(config, (IA3Config, LoraConfig, HUTConfig)):\n",
        "HUT has add_weighted_adapter",
    ),
    Edit(
        "testing_common.py",
        "    if config_cls not in (IA3Config, LoHaConfig, LoKrConfig, LoraConfig):\n",
        "    if config_cls not in (IA3Config, LoHaConfig, LoKrConfig, LoraConfig, HUTConfig):\n",
        "HUT adapts transformers' Conv1D (GPT-2)",
    ),
    Edit(
        "testing_common.py",
        "        if config_cls not in (LoraConfig, RoadConfig):\n",
        "        if config_cls not in (LoraConfig, RoadConfig, HUTConfig):\n",
        "HUT supports mixed-adapter batches",
    ),
    Edit(
        "testing_common.py",
        "        if config_cls not in (LoraConfig,):\n",
        "        if config_cls not in (LoraConfig, HUTConfig):\n",
        "HUT supports mixed-adapter batches with beam search",
    ),
    Edit(
        "testing_common.py",
        "        if not issubclass(config_cls, (LoraConfig, IA3Config)):\n",
        "        if not issubclass(config_cls, (LoraConfig, IA3Config, HUTConfig)):\n",
        "_test_weighted_combination_of_adapters applies to HUT",
    ),
    Edit(
        "testing_common.py",
        "            elif isinstance(config, IA3Config):\n",
        "            elif isinstance(config, (IA3Config, HUTConfig)):\n",
        "HUT's weighted adapters are checked as (IA)³'s are: they exist and run (exact values: tests/test_hut_weighted.py)",
        count=2,
    ),
    Edit(
        "testing_common.py",
        '                    or "fourierft_spectrum" in name\n',
        '                    or "fourierft_spectrum" in name\n                    or "hut_" in name\n',
        "_test_merge_layers_nan sets HUT's parameters to inf too, so safe_merge's inf check is exercised",
    ),
    Edit(
        "test_decoder_models.py", "from peft import (\n", IMPORT + "from peft import (\n", "HUTConfig is named below"
    ),
    Edit("test_custom_models.py", "from peft import (\n", IMPORT + "from peft import (\n", "HUTConfig is named below"),
    Edit(
        "test_custom_models.py",
        "        elif issubclass(config_cls, (VBLoRAConfig, RandLoraConfig, UniLoraConfig, OSFConfig)):\n",
        "        elif issubclass(config_cls, (VBLoRAConfig, RandLoraConfig, UniLoraConfig, OSFConfig, HUTConfig)):\n",
        "test_parameters_after_loading_model: SGD at lr 0.5 on inputs up to 89 makes a multiplicative adapter's "
        "scales overflow to NaN at r = 1 (at r = 8 the means move 8x slower); lr 0.01, as for VB-LoRA and others",
    ),
    Edit(
        "test_decoder_models.py",
        "        if config_cls != LoraConfig:\n"
        '            pytest.skip("Mixed adapter batches not supported for this config.")\n',
        "        if config_cls not in (LoraConfig, HUTConfig):\n"
        '            pytest.skip("Mixed adapter batches not supported for this config.")\n',
        "HUT supports mixed-adapter batches (forward and generate)",
        count=2,
    ),
)


class PatchError(RuntimeError):
    """peft's test files no longer contain the text an edit expects."""


def apply_edits(folder: Path, peft_version: str) -> None:
    """Apply EDITS and JOIN to the copies in ``folder``, in place."""
    texts = {name: (folder / name).read_text() for name in TEST_MODULES + HELPERS}
    for edit in EDITS:
        found = texts[edit.file].count(edit.old)
        if found != edit.count:
            raise PatchError(
                f"peft {peft_version}'s tests/{edit.file} contains {found} (not {edit.count}) copies of the text that "
                f"the edit '{edit.why}' replaces:\n{edit.old}\nUpdate tests/peft_matrix/inject.py for this peft version."
            )
        texts[edit.file] = texts[edit.file].replace(edit.old, edit.new)
    for name in TEST_MODULES:
        texts[name] += JOIN
    for name, text in texts.items():
        (folder / name).write_text(text)
