"""GLUE metrics as the paper reports them: Matthews correlation (CoLA), Pearson (STS-B; Spearman beside it),
accuracy (the rest; F1 too for MRPC and QQP). scikit-learn and scipy compute them; this module only picks the
metrics per task, checks the inputs and fixes the conventions for undefined values (docs/glue.md).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..data.glue import GLUE_TASKS, get_task

logger = logging.getLogger(__name__)

# The paper's headline metric per task (Table 1): a key of compute_glue_metrics' result.
PRIMARY_METRIC: dict[str, str] = {name: spec.metric for name, spec in GLUE_TASKS.items()}


def preds_from_logits(task: str, logits: Any) -> np.ndarray:
    """Predictions from a model's output: class ids by argmax, or the regression output for STS-B.

    Args:
        task: A GLUE task name.
        logits: ``(N, num_labels)`` for classification; ``(N, 1)`` or ``(N,)`` for STS-B.

    Raises:
        ValueError: The shape does not fit the task (e.g. two outputs per row for STS-B).
    """
    spec = get_task(task)
    logits = np.asarray(logits)
    if spec.num_labels == 1:
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits[:, 0]
        if logits.ndim != 1:
            raise ValueError(f"{spec.name} is a regression task: expected logits of shape (N, 1) or (N,), "
                             f"got {logits.shape}.")
        return logits.astype(np.float64)
    if logits.ndim != 2 or logits.shape[1] != spec.num_labels:
        raise ValueError(f"{spec.name}: expected logits of shape (N, {spec.num_labels}), got {logits.shape}.")
    bad = int(np.isnan(logits).any(axis=1).sum())
    if bad:  # argmax would silently call every NaN row class 0
        logger.warning("%s: %d of %d rows of logits contain NaN (a diverged model?); argmax treats them as "
                       "class 0.", spec.name, bad, len(logits))
    return logits.argmax(axis=1)


def _correlation(fn, preds: np.ndarray, labels: np.ndarray) -> float:
    """``fn``'s coefficient, or 0.0 where one side is constant (undefined; scipy would warn and give NaN)."""
    if np.ptp(preds) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(fn(preds, labels)[0])


def compute_glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """Metrics of one GLUE task on one split.

    Returns, per task: CoLA ``matthews_correlation`` and ``accuracy``; STS-B ``pearson`` and ``spearmanr``;
    MRPC and QQP ``accuracy`` and ``f1`` (positive class 1); the rest ``accuracy``. ``PRIMARY_METRIC[task]``
    is the paper's headline key.

    Conventions for undefined values: constant predictions (or labels) give MCC 0 (scikit-learn's choice) and
    Pearson / Spearman 0 (mathematically undefined; 0 keeps means over seeds defined and reads as "no
    correlation"); F1 with no positive prediction and no positive label is 0. NaN regression predictions give
    NaN correlations: a diverged model must not look like a constant one.

    Args:
        task: A GLUE task name.
        predictions: Class ids (or scores for STS-B), shape ``(N,)``; see ``preds_from_logits``.
        labels: Gold labels, shape ``(N,)``.

    Raises:
        ValueError: Unknown task, empty or mismatched inputs, or class ids outside the task's labels.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    spec = get_task(task)
    preds, gold = np.asarray(predictions), np.asarray(labels)
    if preds.ndim != 1 or gold.ndim != 1:
        raise ValueError(f"{spec.name}: predictions and labels must be 1-D, got shapes {preds.shape} and "
                         f"{gold.shape} (use preds_from_logits for model outputs).")
    if len(preds) != len(gold):
        raise ValueError(f"{spec.name}: {len(preds)} predictions for {len(gold)} labels.")
    if len(preds) == 0:
        raise ValueError(f"{spec.name}: no predictions to score.")
    if spec.num_labels == 1:
        preds, gold = preds.astype(np.float64), gold.astype(np.float64)
        if np.isnan(preds).any():
            return {"pearson": float("nan"), "spearmanr": float("nan")}
        return {"pearson": _correlation(pearsonr, preds, gold), "spearmanr": _correlation(spearmanr, preds, gold)}
    allowed = set(range(spec.num_labels))
    for name, values in (("predictions", preds), ("labels", gold)):
        outside = set(np.unique(values).tolist()) - allowed
        if outside:
            raise ValueError(f"{spec.name}: {name} hold {sorted(outside)[:5]}, outside the class ids "
                             f"{sorted(allowed)}.")
    out = {"accuracy": float(accuracy_score(gold, preds))}
    if spec.name == "cola":
        out["matthews_correlation"] = float(matthews_corrcoef(gold, preds))
    if spec.name in ("mrpc", "qqp"):
        out["f1"] = float(f1_score(gold, preds, pos_label=1, average="binary", zero_division=0.0))
    return out
