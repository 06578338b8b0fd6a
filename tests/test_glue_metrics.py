"""GLUE metrics against hand-worked values and scipy / scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from hut_peft.metrics.glue import PRIMARY_METRIC, compute_glue_metrics, preds_from_logits


def test_mcc_on_a_hand_worked_confusion_matrix():
    # tp=3, tn=2, fp=1, fn=1: MCC = (3·2 − 1·1) / sqrt(4·4·3·3) = 5/12
    labels = [1, 1, 1, 1, 0, 0, 0]
    preds = [1, 1, 1, 0, 0, 0, 1]
    out = compute_glue_metrics("cola", preds, labels)
    assert out["matthews_correlation"] == pytest.approx(5 / 12)
    assert out["accuracy"] == pytest.approx(5 / 7)


def test_against_scipy_and_sklearn():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert compute_glue_metrics("mrpc", preds, labels)["f1"] == pytest.approx(f1_score(labels, preds))
    assert compute_glue_metrics("cola", preds, labels)["matthews_correlation"] == pytest.approx(
        matthews_corrcoef(labels, preds))
    y, p = rng.normal(size=100), rng.normal(size=100)
    out = compute_glue_metrics("stsb", p, y)
    assert out["pearson"] == pytest.approx(pearsonr(p, y)[0]) and out["spearmanr"] == pytest.approx(spearmanr(p, y)[0])


def test_degenerate_predictions_and_logits():
    assert compute_glue_metrics("cola", [1, 1, 1], [0, 1, 1])["matthews_correlation"] == 0.0
    assert compute_glue_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"] == 0.0
    assert preds_from_logits("rte", np.array([[0.1, 0.9], [2.0, -1.0]])).tolist() == [1, 0]
    assert preds_from_logits("stsb", np.array([[0.5], [1.5]])).tolist() == [0.5, 1.5]
    assert PRIMARY_METRIC["cola"] == "matthews_correlation" and PRIMARY_METRIC["stsb"] == "pearson"
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_glue_metrics("rte", [0, 1, 1], [0, 1])
    assert not math.isnan(compute_glue_metrics("rte", [0], [0])["accuracy"])
