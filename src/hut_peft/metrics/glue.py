"""GLUE metrics as the paper reports them: Matthews correlation (CoLA), Pearson (STS-B; Spearman too),
accuracy (the rest; F1 too for MRPC and QQP). scipy and scikit-learn compute them."""

from __future__ import annotations

import numpy as np

PRIMARY_METRIC: dict[str, str] = {
    "cola": "matthews_correlation", "stsb": "pearson", "sst2": "accuracy", "mrpc": "accuracy",
    "qqp": "accuracy", "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy",
}


def preds_from_logits(task: str, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax), or the regression output for STS-B."""
    logits = np.asarray(logits)
    return logits.reshape(-1) if task == "stsb" else logits.argmax(axis=-1)


def compute_glue_metrics(task: str, predictions, labels) -> dict[str, float]:
    """Metrics of one task. A constant prediction gives MCC 0 (sklearn's convention) and Pearson 0 (scipy
    would return nan: the correlation is undefined, and 0 keeps averages meaningful; documented)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if task not in PRIMARY_METRIC:
        raise ValueError(f"Unknown GLUE task {task!r}; choose from {', '.join(PRIMARY_METRIC)}.")
    preds, labels = np.asarray(predictions), np.asarray(labels)
    if preds.shape[0] != labels.shape[0]:
        raise ValueError(f"{preds.shape[0]} predictions for {labels.shape[0]} labels.")
    if task == "stsb":
        preds, labels = preds.astype(float), labels.astype(float)
        constant = np.ptp(preds) == 0 or np.ptp(labels) == 0
        return {
            "pearson": 0.0 if constant else float(pearsonr(preds, labels)[0]),
            "spearmanr": 0.0 if constant else float(spearmanr(preds, labels)[0]),
        }
    out = {"accuracy": float(accuracy_score(labels, preds))}
    if task == "cola":
        out["matthews_correlation"] = float(matthews_corrcoef(labels, preds))
    if task in ("mrpc", "qqp"):
        out["f1"] = float(f1_score(labels, preds))
    return out
