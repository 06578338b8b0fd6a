"""SQuAD v1.1's official metrics, exact match and F1, as the release's ``evaluate-v1.1.py`` computes them.

Normalisation: lower-case, drop ASCII punctuation (``string.punctuation``; other punctuation such as "—" or "’"
stays), drop the words ``a``, ``an``, ``the`` (as whole words: "theatre" keeps its "the"), collapse whitespace.
EM is 1 when the normalised strings are equal; F1 is the harmonic mean of token precision and recall over the
normalised tokens (0 when they share none, so an empty prediction scores 0, and a gold answer that normalises
to nothing scores EM 1 but F1 0 against an empty prediction, as the official script does). Each question takes
the maximum over its gold answers; the scores are means over **all** gold questions, ×100, a question without a
prediction counting 0. ``tests/test_squad_metrics.py`` checks these corners on hand-made cases.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..data.squad import SQUAD

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
PRIMARY_METRIC = SQUAD.metric


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    num_same = sum((Counter(prediction_tokens) & Counter(ground_truth_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def question_scores(prediction: str, ground_truths: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of one question: the maximum over its gold answers, each in [0, 1].

    Raises:
        ValueError: No gold answer (the maximum over none is undefined; the official script fails there too).
    """
    if not ground_truths:
        raise ValueError("a SQuAD v1.1 question needs at least one gold answer.")
    return (float(max(exact_match_score(prediction, g) for g in ground_truths)),
            max(f1_score(prediction, g) for g in ground_truths))


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``{"exact_match", "f1"}`` ×100 over every question of ``references`` (id → gold texts), and ``missing``.

    ``predictions`` maps question id to answer text (the official predictions file); a question it lacks scores 0.

    Raises:
        ValueError: No references.
    """
    if not references:
        raise ValueError("no SQuAD questions to score.")
    em = f1 = 0.0
    missing = 0
    for qid, golds in references.items():
        if qid not in predictions:
            missing += 1
            continue
        q_em, q_f1 = question_scores(predictions[qid], golds)
        em += q_em
        f1 += q_f1
    return {"exact_match": 100.0 * em / len(references), "f1": 100.0 * f1 / len(references), "missing": missing}
