"""E2E metrics on hand-worked cases (mteval-v13a's BLEU and NIST), BLEU and NIST against the official scorer's
figures on real outputs, BLEU against sacrebleu, the COCO metrics' ordering, and the e2e-score command end to
end. Only two tests start METEOR's JVM (≈ 20 s each)."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import sacrebleu

from hut_peft.cli import main as cli_main
from hut_peft.lab.data.e2e import group_by_mr, load_e2e, read_official_refs, read_predictions
from hut_peft.lab.metrics.e2e import bleu_nist, coco_metrics_by_segment, mteval_tokenize, nist_length_penalty

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and the PTB tokeniser need Java")
BETA = math.log(2) / math.log(1.5) ** 2  # NIST's brevity constant: penalty 0.5 at length ratio 2/3


def test_tokenisation_is_mteval_13a_with_ascii_lower_casing():
    assert mteval_tokenize("The Vaults, near Café Rouge, costs £20-25.") == \
        ["the", "vaults", ",", "near", "café", "rouge", ",", "costs", "£20", "-", "25", "."]
    assert mteval_tokenize("CAFÉ") == ["cafÉ"]  # Perl's tr/[A-Z]/[a-z]/ leaves non-ASCII capitals alone


def test_perfect_match_and_no_overlap():
    assert bleu_nist(["the cat sat on the mat ."], [["The cat sat on the mat."]])[0] == pytest.approx(1.0)
    bleu, nist = bleu_nist(["zzz yyy xxx www"], [["the cat sat on the mat"]])
    # mteval-v13a smoothing: the k-th order without a match counts 1 / (2^k · hyp n-grams), so no overlap is
    # not exactly 0: (1/8 · 1/12 · 1/16 · 1/16)^(1/4), times the brevity penalty exp(1 − 6/4)
    smoothed = (math.log(1 / 8) + math.log(1 / 12) + math.log(1 / 16) + math.log(1 / 16)) / 4
    assert bleu == pytest.approx(math.exp(smoothed + 1 - 6 / 4)) and nist == 0.0
    assert bleu_nist([""], [["the cat"]]) == (0.0, 0.0)  # an empty output scores exactly 0


def test_case_insensitive_and_multi_reference_takes_the_best():
    assert bleu_nist(["The Vaults is a pub"], [["the vaults is a pub"]])[0] == pytest.approx(1.0)
    worse = bleu_nist(["the vaults is a pub"], [["a pub named the vaults"]])[0]
    better = bleu_nist(["the vaults is a pub"], [["a pub named the vaults", "the vaults is a pub"]])[0]
    assert better == pytest.approx(1.0) and worse < 0.5
    # NIST counts matched information: "Café x" matches both words (info 1 each), "CAFÉ x" only "x"
    assert bleu_nist(["Café X"], [["café x"]])[1] == pytest.approx(1.0)
    assert bleu_nist(["CAFÉ X"], [["café x"]])[1] == pytest.approx(0.5)


def test_bleu_equals_sacrebleu_13a_with_equal_reference_counts():
    hyps = ["the vaults is a pub near the river .", "blue spice is a cheap coffee shop"]
    refs = [["The Vaults is a pub by the river.", "There is a pub called The Vaults near the river."],
            ["Blue Spice is a cheap coffee shop.", "Cheap coffee shop Blue Spice."]]
    expected = sacrebleu.corpus_bleu(hyps, [list(r) for r in zip(*refs)], lowercase=True, tokenize="13a").score
    assert bleu_nist(hyps, refs)[0] == pytest.approx(expected / 100, abs=1e-12)


def test_bleu_closest_length_skips_the_padding_of_missing_references():
    # The second MR has 2 references, so the first gets an empty one. mteval skips empty references when it
    # picks the closest length: 6 for "a b c" (not 0, which ties at distance 3 and is shorter), 4 for "x y z w".
    # Every n-gram precision is 1, so BLEU is the brevity penalty exp(1 − 10/7).
    bleu, _ = bleu_nist(["a b c", "x y z w"], [["a b c d e f"], ["x y z w", "q"]])
    assert bleu == pytest.approx(math.exp(1 - 10 / 7))


def test_nist_hand_worked():
    # refs "a b": info(a) = info(b) = log2(2/1) = 1, info(a b) = log2(1/1) = 0 -> NIST = 2/2 + 0/1 = 1
    assert bleu_nist(["a b"], [["a b"]])[1] == pytest.approx(1.0)
    # refs "a a b": info(a) = log2(3/2), info(b) = log2(3), info(a b) = log2(2/1) = 1
    # hyp "a b": (log2(1.5) + log2(3)) / 2 + 1 / 1, length ratio 2/3 -> penalty exactly 0.5
    expected = (math.log2(1.5) + math.log2(3)) / 2 + 1
    assert bleu_nist(["a b"], [["a a b"]])[1] == pytest.approx(0.5 * expected)
    assert nist_length_penalty(2 / 3) == pytest.approx(0.5) and nist_length_penalty(1.2) == 1.0


def test_nist_reference_length_divides_by_the_mean_number_of_references():
    # mteval-v13a-sig (the E2E script's) divides the reference words, 3 + 3 + 4 = 10, by the mean number of
    # non-empty references per MR, 3 / 2, not by the padded count 2: r̄ = 20/3, length ratio 3 / (20/3) = 0.45.
    # info(a) = info(b) = log2(10/2), info(d) = log2(10/1), info(a b) = log2(2/2) = 0.
    # The official script gives 0.180549465997 on these two files (its Perl, final printf widened).
    expected = (2 * math.log2(5) + math.log2(10)) / 3 * math.exp(-BETA * math.log(0.45) ** 2)
    assert expected == pytest.approx(0.180549465997, abs=1e-12)
    assert bleu_nist(["a b", "d"], [["a b c", "a b c"], ["d e f g"]])[1] == pytest.approx(expected, abs=1e-12)


def test_empty_references_change_nothing():
    # The E2E script pads MRs to the largest reference count with empty references; mteval-v13a-sig ignores
    # them in every count, so passing them explicitly gives the same numbers.
    hyps = ["a b", "d e f"]
    assert bleu_nist(hyps, [["a b c", "", ""], ["d e f g", ""]]) == bleu_nist(hyps, [["a b c"], ["d e f g"]])


def test_nist_keeps_mtevals_zero_prefix_quirk():
    # mteval tests an n-gram's prefix with Perl truthiness: the prefix "0" is false, so info("0 a") is
    # log2(total words / count) = log2(2/1) = 1 instead of log2(1/1) = 0. NIST = (1 + 1)/2 + 1/1 = 2.
    assert bleu_nist(["0 a"], [["0 a"]])[1] == pytest.approx(2.0)


def test_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 reference blocks"):
        bleu_nist(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        bleu_nist(["a"], [[]])


# The official scorer (tuetschek/e2e-metrics, `measure_scores.py REFS PREDS`, default Perl path
# mteval-v13a-sig.pl) on the inputs built below: (BLEU, NIST) as it prints them (4 decimals), and to 12 decimals
# from the same pipeline with only the Perl's final printf widened to %.12f. docs/metrics.md says how to rerun.
OFFICIAL: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "done-when": ((0.6531, 7.1649), (0.653126395057, 7.164911560506)),
    "done-when-first-20": ((0.7297, 7.8406), (0.729685513645, 7.840572790749)),
    "done-when-first-4-refs": ((0.5480, 6.0384), (0.548013462920, 6.038425312191)),
    "dev-short": ((0.4023, 2.9121), (0.402338746729, 2.912106189621)),
}
DONE_WHEN = Path(__file__).resolve().parents[1] / "docs" / "results" / "e2e-done-when"


def _done_when() -> tuple[list[str], list[list[str]]]:
    """The 100-MR outputs and references committed with the E2E done-when run (up to 43 references per MR)."""
    return read_predictions(DONE_WHEN / "predictions.txt"), read_official_refs(DONE_WHEN / "references.txt")


def _first_20() -> tuple[list[str], list[list[str]]]:
    preds, refs = _done_when()
    return preds[:20], refs[:20]


def _first_4_refs() -> tuple[list[str], list[list[str]]]:
    preds, refs = _done_when()
    return preds, [block[:4] for block in refs]


COMMITTED_CASES: dict[str, Callable[[], tuple[list[str], list[list[str]]]]] = {
    "done-when": _done_when, "done-when-first-20": _first_20, "done-when-first-4-refs": _first_4_refs,
}


def _assert_official(case: str, preds: list[str], refs: list[list[str]]) -> None:
    (bleu4, nist4), (bleu12, nist12) = OFFICIAL[case]
    bleu, nist = bleu_nist(preds, refs)
    assert round(bleu, 4) == bleu4 and round(nist, 4) == nist4, (case, bleu, nist)
    assert bleu == pytest.approx(bleu12, abs=1e-11) and nist == pytest.approx(nist12, abs=1e-11), (case, bleu, nist)


@pytest.mark.parametrize("case", list(COMMITTED_CASES))
def test_bleu_nist_equal_the_official_scorer_on_committed_outputs(case):
    # Unequal reference counts (2 to 43 per MR) in the first two; exactly 4 per MR in the third.
    preds, refs = COMMITTED_CASES[case]()
    assert case != "done-when-first-4-refs" or {len(block) for block in refs} == {4}
    _assert_official(case, preds, refs)


def test_bleu_nist_equal_the_official_scorer_on_short_outputs(data_dir):
    # Dev set grouped by MR in first-seen order, MRs with one reference skipped; the output is the first
    # reference cut to its first max(1, int(0.6 × words)) words, scored against the other references. Outputs
    # this short put NIST's length penalty to work: the earlier port gave 8.6197 here.
    if not (data_dir / "e2e" / "devset.csv").is_file():
        pytest.skip(f"{data_dir / 'e2e' / 'devset.csv'} not found (set HUT_PEFT_DATA_DIR)")
    groups = [refs for _, refs in group_by_mr(load_e2e("validation", data_dir / "e2e")) if len(refs) > 1]
    preds = [" ".join(r[0].split()[:max(1, int(0.6 * len(r[0].split())))]) for r in groups]
    assert len(groups) == 547
    _assert_official("dev-short", preds, [refs[1:] for refs in groups])


REFS = [["The Vaults is a pub near the river.", "A pub called The Vaults is by the river."],
        ["Blue Spice is a cheap Chinese restaurant.", "Blue Spice serves cheap Chinese food.", "Cheap food: Blue Spice."],
        ["Aromi is a family friendly coffee shop."]]
PREDS = ["The Vaults is a pub near the river.", "Blue Spice is a restaurant.", "Nothing in common here at all."]


@pytest.fixture(scope="module")
def coco_scores():
    """One METEOR/PTB run on three MRs: a perfect output, a partial one, an unrelated one."""
    return coco_metrics_by_segment(PREDS, REFS)


@needs_java
def test_coco_metrics_rank_perfect_over_partial_over_none(coco_scores):
    corpus, segments = coco_scores
    assert set(corpus) == set(segments) == {"METEOR", "ROUGE_L", "CIDEr"}
    for name, (perfect, partial, none) in segments.items():
        assert perfect > partial > none >= 0.0, name
    assert segments["ROUGE_L"][0] == pytest.approx(1.0) and segments["ROUGE_L"][2] == 0.0
    assert corpus["ROUGE_L"] == pytest.approx(sum(segments["ROUGE_L"]) / 3)


@needs_java
def test_e2e_score_cli_end_to_end(tmp_path, capsys, coco_scores):
    refs_file, preds_file = tmp_path / "refs.txt", tmp_path / "preds.txt"
    refs_file.write_text("\n\n".join("\n".join(block) for block in REFS) + "\n", encoding="utf-8")
    preds_file.write_text("\n".join(PREDS) + "\n", encoding="utf-8")
    assert cli_main(["e2e-score", str(refs_file), str(preds_file)]) == 0
    scores = json.loads(capsys.readouterr().out)
    bleu, nist = bleu_nist(PREDS, REFS)
    assert scores == pytest.approx({"BLEU": bleu, "NIST": nist, **coco_scores[0]})
    assert list(scores) == ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"]


def test_e2e_score_cli_errors(tmp_path, capsys, monkeypatch):
    refs_file, preds_file = tmp_path / "refs.txt", tmp_path / "preds.txt"
    refs_file.write_text("a b\nc d\n\ne f\n", encoding="utf-8")
    preds_file.write_text("only one line\n", encoding="utf-8")
    assert cli_main(["e2e-score", str(refs_file), str(preds_file)]) == 2
    err = capsys.readouterr().err
    assert "has 1 predictions" in err and "has 2 reference blocks" in err
    preds_file.write_text("x\ny\n", encoding="utf-8")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cli_main(["e2e-score", str(refs_file), str(preds_file)]) == 2
    assert "default-jre-headless" in capsys.readouterr().err
