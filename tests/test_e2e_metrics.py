"""E2E metrics on hand-worked cases; BLEU against sacrebleu; the e2e-score command end to end."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import sacrebleu

from hut_peft.metrics.e2e import bleu_nist, score_e2e

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and the PTB tokeniser need Java")


def test_perfect_match_and_no_overlap():
    assert bleu_nist(["the cat sat on the mat ."], [["The cat sat on the mat."]])[0] == pytest.approx(1.0)
    bleu, nist = bleu_nist(["zzz yyy xxx www"], [["the cat sat on the mat"]])
    # mteval-v13a smoothing: the k-th zero-match order counts 1 / (2^k · hyp n-grams); BP exp(1 − 6/4)
    smoothed = (math.log(1 / 8) + math.log(1 / 12) + math.log(1 / 16) + math.log(1 / 16)) / 4
    assert bleu == pytest.approx(math.exp(smoothed + 1 - 6 / 4)) and nist == 0.0


def test_case_insensitive_and_multi_reference_takes_the_best():
    single = bleu_nist(["The Vaults is a pub"], [["the vaults is a pub"]])[0]
    assert single == pytest.approx(1.0)
    worse = bleu_nist(["the vaults is a pub"], [["a pub named the vaults"]])[0]
    better = bleu_nist(["the vaults is a pub"], [["a pub named the vaults", "the vaults is a pub"]])[0]
    assert better == pytest.approx(1.0) and worse < better


def test_bleu_equals_sacrebleu_13a_with_equal_reference_counts():
    hyps = ["the vaults is a pub near the river .", "blue spice is a cheap coffee shop"]
    refs = [["The Vaults is a pub by the river.", "There is a pub called The Vaults near the river."],
            ["Blue Spice is a cheap coffee shop.", "Cheap coffee shop Blue Spice."]]
    expected = sacrebleu.corpus_bleu(hyps, [list(r) for r in zip(*refs)], lowercase=True, tokenize="13a").score
    assert bleu_nist(hyps, refs)[0] == pytest.approx(expected / 100, abs=1e-12)


def test_nist_hand_worked():
    # refs "a b": info(a) = info(b) = log2(2/1) = 1, info(a b) = log2(1/1) = 0 -> NIST = 2/2 + 0 = 1
    assert bleu_nist(["a b"], [["a b"]])[1] == pytest.approx(1.0)
    # refs "a a b": info(a) = log2(3/2), info(b) = log2(3), info(a b) = log2(2/1) = 1
    # hyp "a b": (log2(1.5) + log2(3)) / 2 + 1 / 1, length ratio 2/3 -> penalty exactly 0.5
    expected = (math.log2(1.5) + math.log2(3)) / 2 + 1
    assert bleu_nist(["a b"], [["a a b"]])[1] == pytest.approx(0.5 * expected)


def test_padding_of_missing_references_follows_the_official_script():
    # 2 reference sets: the second MR's missing reference is an empty one, which lowers the average
    # reference length NIST divides by (total words / number of reference sets)
    _, nist_padded = bleu_nist(["a b c", "d e"], [["a b c", "a b c"], ["d e"]])
    _, nist_full = bleu_nist(["a b c", "d e"], [["a b c", "a b c"], ["d e", "d e"]])
    assert nist_padded != nist_full


@needs_java
def test_all_five_metrics_and_the_cli(tmp_path):
    refs = [["The Vaults is a pub near the river.", "A pub called The Vaults."], ["Blue Spice is cheap."]]
    good = score_e2e(["The Vaults is a pub near the river.", "Blue Spice is cheap."], refs)
    bad = score_e2e(["Something else entirely.", "Nothing at all."], refs)
    assert set(good) == {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
    assert all(good[k] > bad[k] for k in good)
    assert good["ROUGE_L"] == pytest.approx(1.0) and good["BLEU"] > 0.9
    (tmp_path / "refs.txt").write_text("The Vaults is a pub near the river.\nA pub called The Vaults.\n\nBlue Spice is cheap.\n")
    (tmp_path / "preds.txt").write_text("The Vaults is a pub near the river.\nBlue Spice is cheap.\n")
    out = subprocess.run([sys.executable, "-m", "hut_peft.cli", "e2e-score", str(tmp_path / "refs.txt"),
                          str(tmp_path / "preds.txt")], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == pytest.approx(good)
    (tmp_path / "preds.txt").write_text("only one line\n")
    bad_run = subprocess.run([sys.executable, "-m", "hut_peft.cli", "e2e-score", str(tmp_path / "refs.txt"),
                              str(tmp_path / "preds.txt")], capture_output=True, text=True)
    assert bad_run.returncode == 2 and "1 predictions but" in bad_run.stderr and "2 reference blocks" in bad_run.stderr
