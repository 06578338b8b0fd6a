"""Which input words an extractive QA model's answer rests on: integrated gradients over the word embeddings.

The paper's Figure 4 shades each input word "by how much the fine-tuned model attends to" it. We measure that with
Captum's ``LayerIntegratedGradients`` (Sundararajan et al. 2017) on the word-embedding layer, for the score of the
span the model predicts, ``f(x) = start_logit[s*] + end_logit[e*]``: the attribution of each token is its share of
``f(x) − f(baseline)``, the baseline being the same window with every question and context token replaced by
[PAD] ([CLS], [SEP], positions and segments kept). Completeness (the attributions sum to that difference) holds up
to the integral's discretisation error, which Captum returns and we record per question (``delta``).
docs/squad.md says why this, rather than raw attention weights, is what we take the paper's words to mean.

Shares: a token's share is ``|a_t| / Σ |a|`` over the question and context tokens (special tokens excluded). Per
question we report the share on the gold answer span (every gold answer's characters), on the context words outside
it that repeat one of the question's content words (lower-cased ``\\w+`` words, stop words dropped), and on the
question itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

# Function words that carry no content for the question-overlap measure (fixed; docs/squad.md).
STOP_WORDS = frozenset("""
a an the of in on at to for by with from into onto about as and or but nor not no is are was were be been being am
do does did done has have had having can could may might must shall should will would what which who whom whose when
where why how that this these those there here it its it's than then so such s many much more most some any all each
other another one ones if also up out over under after before during between through per vs
""".split())
_WORD = re.compile(r"\w+")


@dataclass
class Explanation:
    """One model's answer to one question and the attribution of each window token to it."""

    question_id: str
    prediction: str
    tokens: list[str]  # the window's tokens (word pieces)
    kinds: list[str]  # per token: "special", "question" or "context"
    spans: list[Optional[tuple[int, int]]]  # per token: character span in its own text (question or context)
    scores: list[float]  # per token: signed attribution (sums to target up to delta)
    target: float  # f(x) − f(baseline)
    delta: float  # Captum's convergence delta: Σ scores − target
    shares: dict[str, float] = field(default_factory=dict)


def content_words(question: str) -> set[str]:
    """The question's words that carry content: lower-cased ``\\w+`` words not in ``STOP_WORDS``."""
    return {w for w in _WORD.findall(question.lower()) if w not in STOP_WORDS}


def attribution_shares(kinds: list[str], spans: list[Optional[tuple[int, int]]], scores: list[float], context: str,
                       question: str, answers: list[tuple[int, int]]) -> dict[str, float]:
    """Shares of ``|attribution|`` on the gold answer, on context words repeating the question's content words
    (outside the answer), and on the question; the rest is the other context words.

    ``answers``: character ranges ``[start, end)`` of the gold answers in ``context``.
    """
    keywords = content_words(question)
    overlap = [(m.start(), m.end()) for m in _WORD.finditer(context) if m.group().lower() in keywords]

    def inside(span: tuple[int, int], ranges: list[tuple[int, int]]) -> bool:
        return any(span[0] < end and start < span[1] for start, end in ranges)

    totals = {"answer": 0.0, "question_words_in_context": 0.0, "question": 0.0, "other_context": 0.0}
    for kind, span, score in zip(kinds, spans, scores):
        if kind == "special":
            continue
        if kind == "question":
            key = "question"
        elif inside(span, answers):
            key = "answer"
        elif inside(span, overlap):
            key = "question_words_in_context"
        else:
            key = "other_context"
        totals[key] += abs(score)
    mass = sum(totals.values())
    return {k: (v / mass if mass > 0 else 0.0) for k, v in totals.items()}


def _span_score(model: Any):
    """``forward(input_ids, attention_mask, token_type_ids, start, end) -> start_logit[start] + end_logit[end]``."""

    def forward(input_ids, attention_mask, token_type_ids, start: int, end: int):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = model(**kwargs)
        return out.start_logits[:, start] + out.end_logits[:, end]

    return forward


def explain_question(model: Any, tokenizer: Any, example: dict[str, Any], max_length: int = 384,
                     doc_stride: int = 128, n_best: int = 20, max_answer_length: int = 30,
                     n_steps: int = 32) -> Explanation:
    """The model's answer to ``example`` (hub schema) and integrated-gradient attributions over its best window.

    The window is the one whose best valid span scores highest (the span ``postprocess`` would return); attributions
    are for that span's score. The model runs in fp32, in eval mode.
    """
    from captum.attr import LayerIntegratedGradients

    from .train.squad import best_span, encode_windows

    encoded = encode_windows(tokenizer, [example["question"]], [example["context"]], max_length, doc_stride)
    context_index = 1 if tokenizer.padding_side == "right" else 0
    model.eval()
    best = None
    for i in range(len(encoded["input_ids"])):
        inputs = {k: torch.tensor([encoded[k][i]]) for k in ("input_ids", "attention_mask", "token_type_ids")
                  if k in encoded}
        with torch.no_grad():
            out = model(**inputs)
        offsets = [o if s == context_index else None
                   for o, s in zip(encoded["offset_mapping"][i], encoded.sequence_ids(i))]
        found = best_span(out.start_logits[0].tolist(), out.end_logits[0].tolist(), offsets, n_best, max_answer_length)
        if found is not None and (best is None or found[0] > best[0][0]):
            best = (found, i, inputs, offsets)
    if best is None:
        raise ValueError(f"question {example['id']}: no valid answer span in any window.")
    (_, start, end), i, inputs, offsets = best
    sequence_ids = encoded.sequence_ids(i)
    kinds = ["special" if s is None else "context" if s == context_index else "question" for s in sequence_ids]
    ids = inputs["input_ids"]
    baseline = ids.clone()
    baseline[0, [k != "special" for k in kinds]] = tokenizer.pad_token_id
    lig = LayerIntegratedGradients(_span_score(model), model.get_input_embeddings())
    token_types = inputs.get("token_type_ids")
    attributions, delta = lig.attribute(
        inputs=ids, baselines=baseline, additional_forward_args=(inputs["attention_mask"], token_types, start, end),
        n_steps=n_steps, internal_batch_size=n_steps, return_convergence_delta=True,
    )
    scores = attributions.sum(dim=-1)[0].detach()
    forward = _span_score(model)
    with torch.no_grad():
        target = float(forward(ids, inputs["attention_mask"], token_types, start, end)
                       - forward(baseline, inputs["attention_mask"], token_types, start, end))
    spans = [tuple(o) if k != "special" else None for o, k in zip(encoded["offset_mapping"][i], kinds)]
    gold = [(s, s + len(t)) for s, t in zip(example["answers"]["answer_start"], example["answers"]["text"])]
    explanation = Explanation(
        question_id=example["id"], prediction=example["context"][offsets[start][0]:offsets[end][1]],
        tokens=tokenizer.convert_ids_to_tokens(encoded["input_ids"][i]), kinds=kinds, spans=spans,
        scores=scores.tolist(), target=target, delta=float(delta[0]),
    )
    explanation.shares = attribution_shares(kinds, spans, explanation.scores, example["context"],
                                            example["question"].lstrip(), gold)
    return explanation


def words(explanation: Explanation, example: dict[str, Any]) -> list[dict[str, Any]]:
    """The window as words for display: ``{"text", "kind", "share", "answer", "predicted", "glued"}`` (``glued``: no
    space before it in the text), question then context.

    Word pieces are joined back into the words of the original text (``\\w+`` runs and single punctuation marks);
    a word's share is the sum of its pieces' ``|attribution|`` over the window's total.
    """
    question = example["question"].lstrip()
    texts = {"question": question, "context": example["context"]}
    total = sum(abs(s) for s, k in zip(explanation.scores, explanation.kinds) if k != "special") or 1.0
    gold = [(s, s + len(t)) for s, t in zip(example["answers"]["answer_start"], example["answers"]["text"])]
    predicted = example["context"].find(explanation.prediction) if explanation.prediction else -1
    out: list[dict[str, Any]] = []
    for kind in ("question", "context"):
        pieces = [(span, abs(score)) for span, score, k in zip(explanation.spans, explanation.scores,
                                                               explanation.kinds) if k == kind]
        if not pieces:
            continue
        lo, hi = pieces[0][0][0], pieces[-1][0][1]
        for m in re.finditer(r"\w+|[^\w\s]", texts[kind][lo:hi]):
            start, end = lo + m.start(), lo + m.end()
            share = sum(w for span, w in pieces if span[0] < end and start < span[1]) / total
            in_gold = kind == "context" and any(start < e and s < end for s, e in gold)
            in_pred = (kind == "context" and predicted >= 0
                       and start < predicted + len(explanation.prediction) and predicted < end)
            glued = start > lo and not texts[kind][start - 1].isspace()  # no space before it in the text
            out.append({"text": m.group(), "kind": kind, "share": share, "answer": in_gold, "predicted": in_pred,
                        "glued": glued})
    return out
