"""peft's own generic test matrix, run against HUT (tests/peft_matrix/run.py; docs/methods.md has the result).

The matrix itself runs in a subprocess (about two minutes here): its pytest has its own rootdir, conftest and
settings, taken from peft's sdist for the installed peft version. The unit tests below check the parts it is
built from, so a break in them points at the cause.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

MATRIX = Path(__file__).resolve().parent / "peft_matrix"
sys.path.insert(0, str(MATRIX))

import hut_join  # noqa: E402
import standins  # noqa: E402
from inject import EDITS, HELPERS, TEST_MODULES, PatchError, apply_edits  # noqa: E402

# What the matrix gave with peft 0.21.2 (docs/methods.md); a lower count means HUT's rows stopped being collected.
MIN_PASSED = 1300


def _summary(text: str) -> dict[str, int]:
    line = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed)", ln)][-1]
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)", line)}


def test_peft_generic_matrix_passes_for_hut():
    done = subprocess.run(
        [sys.executable, str(MATRIX / "run.py"), "-p", "no:warnings"], capture_output=True, text=True, timeout=1200
    )
    tail = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, tail
    counts = _summary(done.stdout)
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0 and counts.get("errors", 0) == 0, tail
    assert counts["passed"] >= MIN_PASSED, tail


def test_summary_parser_reads_pytest_counts():
    text = "....\n1378 passed, 153 skipped, 222 deselected, 6 xfailed in 103.23s (0:01:43)\n"
    assert _summary(text) == {"passed": 1378, "skipped": 153, "xfailed": 6}


def test_edits_stop_on_text_that_peft_no_longer_has(tmp_path):
    for name in TEST_MODULES + HELPERS:
        (tmp_path / name).write_text("# nothing peft-like here\n")
    with pytest.raises(PatchError, match=r"peft 9\.9\.9's tests/testing_utils\.py contains 0 \(not 1\) copies"):
        apply_edits(tmp_path, "9.9.9")


def test_every_edit_names_hut_and_says_why():
    for edit in EDITS:
        assert ("HUTConfig" in edit.new or '"hut_"' in edit.new) and edit.old != edit.new and edit.why


def test_join_adds_rows_and_keeps_only_huts():
    import types

    module = types.ModuleType("tests.test_feature_extraction_models")
    rows = [(object, {"x": 1})]

    class TestThing:
        @pytest.mark.parametrize("config_cls,config_kwargs", rows)
        def test_a(self, config_cls, config_kwargs):
            pass

    from peft import LoraConfig

    rows.append((LoraConfig, {}))
    module.ALL_CONFIGS = rows
    module.TestThing = TestThing
    hut_join.join(module)
    assert [r for r in rows if hut_join.is_hut(r)] == rows[1:]  # LoRA's row dropped, the config-free row kept
    assert rows[0] == (object, {"x": 1}) and len(rows) == 3


# Models whose padding id is 1 as on the hub; their targeted layers have biases and they add position embeddings,
# so the zero padding row does not reach HUT's layers as a zero input.
PAD_ONE_AS_ON_THE_HUB = ("Bart", "OPT", "Roberta")


@pytest.mark.parametrize(
    "model_id", sorted(m for m, (cls, _) in standins.STANDINS.items() if not cls.__name__.startswith(PAD_ONE_AS_ON_THE_HUB))
)
def test_standins_keep_the_test_token_ids_non_padding(model_id):
    """peft's tests feed ids 1 and 2; a zero (padding) embedding row is left unchanged by a multiplicative adapter
    on a bias-free model, so the tests would see no effect of HUT at all."""
    model_cls, make_config = standins.STANDINS[model_id]
    torch.manual_seed(0)
    emb = model_cls(make_config()).get_input_embeddings().weight
    assert emb.shape[0] == standins.VOCAB
    assert bool(emb[1].abs().sum() > 0) and bool(emb[2].abs().sum() > 0)


def test_standins_load_offline_from_the_local_hub_cache(tmp_path):
    model_id = "trl-internal-testing/tiny-random-LlamaForCausalLM"
    assert standins.write_hub_cache(tmp_path, [model_id]) == [model_id]
    assert standins.write_hub_cache(tmp_path, [model_id]) == []  # an unchanged config is not rebuilt
    code = f"from transformers import AutoModelForCausalLM as A; print(type(A.from_pretrained({model_id!r})).__name__)"
    env = {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "LlamaForCausalLM"
