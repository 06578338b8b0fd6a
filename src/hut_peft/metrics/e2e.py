"""The E2E NLG Challenge's official metrics: BLEU, NIST, METEOR, ROUGE-L, CIDEr.

The official script (tuetschek/e2e-metrics, ``measure_scores.py``) computes BLEU and NIST with NIST's
``mteval-v13a`` Perl script, and METEOR, ROUGE-L and CIDEr with the MS-COCO caption evaluation code after
PTB tokenisation. We reproduce each on the same definitions:

- BLEU and NIST are ported here from ``mteval-v13a`` (no maintained package computes its NIST; nltk's NIST
  differs in its information weights and brevity). Text is lower-cased and tokenised with the 13a rules
  (sacrebleu's ``Tokenizer13a``, the same regular expressions). Like the official script, MRs with fewer
  references than the largest count are padded with empty references, which mteval sees as references of
  length 0: this matters for BLEU's closest reference length and NIST's average reference length.
- METEOR 1.5 (``-l en -norm``), ROUGE-L (β = 1.2, max over references) and CIDEr-D come from
  ``pycocoevalcap``, the package of the same COCO code, after its PTB tokeniser. Both need Java.

Scales are the official script's: BLEU, METEOR, ROUGE-L in [0, 1], NIST and CIDEr unbounded. The paper's
Table 3 prints BLEU, METEOR and ROUGE-L × 100.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from typing import Sequence

MAX_BLEU_N, MAX_NIST_N = 4, 5


def _tokenize(text: str) -> list[str]:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text.lower().strip()).split()


def _ngrams(words: Sequence[str], n_max: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1))


def _pad(references: Sequence[Sequence[str]]) -> list[list[str]]:
    width = max(len(r) for r in references)
    return [list(r) + [""] * (width - len(r)) for r in references]


def _closest(current: int, candidate: int, hyp: int) -> int:
    """mteval-v13a's ``brevity_penalty_closest``: closer wins, ties go to the shorter."""
    if abs(hyp - candidate) < abs(hyp - current) or (abs(hyp - candidate) == abs(hyp - current) and candidate < current):
        return candidate
    return current


def bleu_nist(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, float]:
    """Corpus BLEU (4-gram, mteval-v13a smoothing, closest reference length) and NIST (5-gram)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference blocks.")
    refs = [[_tokenize(r) for r in block] for block in _pad(references)]
    hyps = [_tokenize(p) for p in predictions]
    n_refsets = len(refs[0]) if refs else 0
    # information weights from every reference n-gram: info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn))
    counts: Counter = Counter()
    total_words = 0
    for block in refs:
        for words in block:
            total_words += len(words)
            counts.update(_ngrams(words, MAX_NIST_N))
    info = {g: math.log2((counts[g[:-1]] if len(g) > 1 else total_words) / c) for g, c in counts.items()}

    match = [0] * (MAX_NIST_N + 1)
    tst = [0] * (MAX_NIST_N + 1)
    tst_info = [0.0] * (MAX_NIST_N + 1)
    ref_words = 0
    ref_length = 0
    for hyp, block in zip(hyps, refs):
        hyp_ngrams = _ngrams(hyp, MAX_NIST_N)
        for n in range(1, MAX_NIST_N + 1):
            tst[n] += max(len(hyp) - n + 1, 0)
        best: Counter = Counter()
        closest = None
        for words in block:
            ref_words += len(words)
            for g, c in _ngrams(words, MAX_NIST_N).items():
                best[g] = max(best[g], c)
            closest = len(words) if closest is None else _closest(closest, len(words), len(hyp))
        ref_length += closest or 0
        for g, c in hyp_ngrams.items():
            if g in best:
                m = min(c, best[g])
                match[len(g)] += m
                tst_info[len(g)] += info[g] * m

    # BLEU, mteval-v13a's default (smoothed) bleu_score on corpus totals
    bleu = 0.0
    if tst[1] > 0:
        log_bp = min(0.0, 1 - ref_length / tst[1])
        score, smooth = 0.0, 1
        for n in range(1, MAX_BLEU_N + 1):
            if tst[n] == 0:
                iscore = 0.0
            elif match[n] == 0:
                smooth *= 2
                iscore = math.log(1 / (smooth * tst[n]))
            else:
                iscore = math.log(match[n] / tst[n])
            score += iscore
        bleu = math.exp(score / MAX_BLEU_N + log_bp)

    # NIST: information-weighted precision summed over n, times the length penalty on the average ref length
    nist = sum(tst_info[n] / max(tst[n], 1) for n in range(1, MAX_NIST_N + 1))
    ratio = tst[1] / (ref_words / n_refsets) if ref_words else 0.0
    nist *= _nist_length_penalty(ratio)
    return bleu, nist


def _nist_length_penalty(ratio: float) -> float:
    """exp(−β log²(ratio)) below ratio 1, β chosen so the penalty is 0.5 at ratio 2/3 (mteval)."""
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    beta = -math.log(0.5) / math.log(1.5) ** 2
    return math.exp(-beta * math.log(ratio) ** 2)


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(
            "METEOR and the PTB tokeniser of the official E2E metrics run on Java, and no `java` is on PATH. "
            "Install a Java runtime (Debian: `apt-get install default-jre-headless`), then score again."
        )
    return java


def coco_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """METEOR, ROUGE-L and CIDEr(-D) as the COCO caption code computes them, after PTB tokenisation."""
    require_java()
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {str(i): [{"caption": r} for r in refs] for i, refs in enumerate(references)}
    res = {str(i): [{"caption": p}] for i, p in enumerate(predictions)}
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts), tok.tokenize(res)
    return {
        "METEOR": float(Meteor().compute_score(gts, res)[0]),
        "ROUGE_L": float(Rouge().compute_score(gts, res)[0]),
        "CIDEr": float(Cider().compute_score(gts, res)[0]),
    }


def score_e2e(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """The five official metrics for one output per MR against all of that MR's references."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference blocks: give one "
                         "prediction per MR.")
    if not predictions:
        raise ValueError("Nothing to score: no predictions.")
    if any(not refs for refs in references):
        raise ValueError("Every MR needs at least one reference.")
    bleu, nist = bleu_nist(predictions, references)
    return {"BLEU": bleu, "NIST": nist, **coco_metrics(predictions, references)}
