"""GLUE metrics against hand-worked values and scipy / scikit-learn, and the conventions for undefined values."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hut_peft.lab.metrics.glue import PRIMARY_METRIC, compute_glue_metrics, preds_from_logits


def test_mcc_and_f1_on_a_hand_worked_confusion_matrix():
    # tp=3, fn=1, tn=2, fp=1: MCC = (3·2 − 1·1) / sqrt((3+1)(3+1)(2+1)(2+1)) = 5/12; F1 = 2·3 / (2·3+1+1) = 3/4
    labels = [1, 1, 1, 1, 0, 0, 0]
    preds = [1, 1, 1, 0, 0, 0, 1]
    cola = compute_glue_metrics("cola", preds, labels)
    assert cola == pytest.approx({"matthews_correlation": 5 / 12, "accuracy": 5 / 7})
    assert compute_glue_metrics("mrpc", preds, labels) == pytest.approx({"accuracy": 5 / 7, "f1": 3 / 4})


def test_pearson_and_spearman_by_hand():
    # x = [1, 2, 3], y = [1, 2, 4]: deviations (-1, 0, 1) and (-4/3, -1/3, 5/3);
    # Pearson = 3 / sqrt(2 · 14/3) = 3 / sqrt(28/3); the ranks agree, so Spearman = 1.
    out = compute_glue_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert out == pytest.approx({"pearson": 3 / math.sqrt(28 / 3), "spearmanr": 1.0})
    # Spearman with a tie: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4), deviations (-1.5, 0, 0, 1.5) and
    # (-1.5, -0.5, 0.5, 1.5): Pearson of the ranks = 4.5 / sqrt(4.5 · 5)
    assert compute_glue_metrics("stsb", [0.0, 1.0, 1.0, 3.0], [1, 2, 3, 4])["spearmanr"] == pytest.approx(
        4.5 / math.sqrt(4.5 * 5))


def test_against_scipy_and_sklearn():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert compute_glue_metrics("qqp", preds, labels) == pytest.approx(
        {"accuracy": accuracy_score(labels, preds), "f1": f1_score(labels, preds)})
    assert compute_glue_metrics("cola", preds, labels)["matthews_correlation"] == pytest.approx(
        matthews_corrcoef(labels, preds))
    labels3, preds3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert compute_glue_metrics("mnli", preds3, labels3) == pytest.approx(
        {"accuracy": accuracy_score(labels3, preds3)})
    y, p = rng.normal(size=100), rng.normal(size=100)
    assert compute_glue_metrics("stsb", p, y) == pytest.approx(
        {"pearson": pearsonr(p, y)[0], "spearmanr": spearmanr(p, y)[0]})


def test_undefined_values_follow_the_documented_conventions():
    assert compute_glue_metrics("cola", [1, 1, 1], [0, 1, 1])["matthews_correlation"] == 0.0
    assert compute_glue_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearmanr": 0.0}
    assert compute_glue_metrics("mrpc", [0, 0], [0, 0])["f1"] == 0.0
    nan = compute_glue_metrics("stsb", [float("nan"), 1.0, 2.0], [1.0, 2.0, 3.0])
    assert math.isnan(nan["pearson"]) and math.isnan(nan["spearmanr"])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="rte: 3 predictions for 2 labels"):
        compute_glue_metrics("rte", [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no predictions to score"):
        compute_glue_metrics("rte", [], [])
    with pytest.raises(ValueError, match=r"predictions hold \[2\], outside the class ids \[0, 1\]"):
        compute_glue_metrics("rte", [0, 2], [0, 1])
    with pytest.raises(ValueError, match="must be 1-D"):
        compute_glue_metrics("rte", [[0.1, 0.9]], [1])
    with pytest.raises(ValueError, match="Unknown GLUE task"):
        compute_glue_metrics("squad", [0], [0])


def test_preds_from_logits(caplog):
    assert preds_from_logits("rte", np.array([[0.1, 0.9], [2.0, -1.0]])).tolist() == [1, 0]
    assert preds_from_logits("mnli", np.array([[0.1, 0.2, 0.9]])).tolist() == [2]
    assert preds_from_logits("stsb", np.array([[0.5], [1.5]])).tolist() == [0.5, 1.5]
    assert preds_from_logits("stsb", [0.5, 1.5]).tolist() == [0.5, 1.5]
    with pytest.raises(ValueError, match=r"regression task: expected logits of shape \(N, 1\) or \(N,\), got "
                                         r"\(2, 2\)"):
        preds_from_logits("stsb", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"mnli: expected logits of shape \(N, 3\), got \(4, 2\)"):
        preds_from_logits("mnli", np.zeros((4, 2)))
    with caplog.at_level(logging.WARNING, logger="hut_peft.lab.metrics.glue"):
        preds_from_logits("rte", np.array([[np.nan, 1.0], [0.0, 1.0]]))
    assert "1 of 2 rows of logits contain NaN" in caplog.text


def test_primary_metric_is_the_papers_headline_and_is_reported():
    assert PRIMARY_METRIC == {"cola": "matthews_correlation", "stsb": "pearson", "sst2": "accuracy",
                              "mrpc": "accuracy", "qnli": "accuracy", "rte": "accuracy", "mnli": "accuracy",
                              "qqp": "accuracy"}
    for task, key in PRIMARY_METRIC.items():
        preds = [0.0, 1.0, 2.0] if task == "stsb" else [0, 1, 1]
        assert key in compute_glue_metrics(task, preds, [0, 1, 2] if task == "stsb" else [0, 1, 0])
