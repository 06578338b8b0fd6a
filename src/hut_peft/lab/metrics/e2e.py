"""The E2E NLG Challenge's official metrics: BLEU, NIST, METEOR, ROUGE-L, CIDEr.

The official script (tuetschek/e2e-metrics, ``measure_scores.py``) computes BLEU and NIST with NIST's
``mteval-v13a-sig.pl`` (Perl), and METEOR, ROUGE-L and CIDEr with the MS-COCO caption evaluation code after
PTB tokenisation. We compute each on the same definitions; docs/metrics.md has the details:

- BLEU and NIST are ported here from ``mteval-v13a-sig.pl``: no maintained package computes its NIST (nltk's
  differs), and no package handles its variable reference count the way the E2E script does. The E2E script
  pads MRs that have fewer references than the largest count with empty references; this variant of NIST's
  mteval-v13a then ignores an empty reference everywhere: BLEU's closest reference length skips it, and
  NIST's length penalty divides the reference words by the mean number of NON-EMPTY references per MR (stock
  mteval-v13a divides by the number of reference sets, i.e. the padded count). So the padding changes no
  number, and we do not pad. Text is lower-cased (ASCII only, as Perl's ``tr/[A-Z]/[a-z]/``) and tokenised
  with the 13a rules (sacrebleu's ``Tokenizer13a``: the same regular expressions). Checked against the
  official script end to end (``measure_scores.py``'s SGML files through its Perl,
  tools/check_e2e_against_official.py): equal to 1e-12 on issue 11's four cases (tests/test_e2e_metrics.py)
  and on 40 random dev-set cases. An earlier check, against the Perl functions driven by a harness of its
  own, used the stock divisor and missed the difference; docs/metrics.md says how. BLEU equals sacrebleu's
  where every MR has the same number of references.
- METEOR 1.5 (``-l en -norm``), ROUGE-L (β = 1.2, max over references) and CIDEr-D come from
  ``pycocoevalcap``, the packaged COCO code the official script vendors, after its PTB tokeniser. Both
  tokeniser and METEOR run on Java.

Scales are the official script's: BLEU, METEOR, ROUGE-L in [0, 1], NIST and CIDEr unbounded. The paper's
Table 3 prints BLEU, METEOR and ROUGE-L × 100 (BLEU 70.4 = 0.704) and NIST, CIDEr as they are.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Sequence

MAX_BLEU_N, MAX_NIST_N = 4, 5
METRIC_NAMES = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def mteval_tokenize(text: str) -> list[str]:
    """mteval-v13a's default normalisation: ASCII lower-casing, then the 13a punctuation rules."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(" ".join(text.split()).translate(_ASCII_LOWER)).split()


def _ngrams(words: Sequence[str], n_max: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1))


def _closest(current: int, candidate: int, hyp: int) -> int:
    """mteval-v13a-sig's ``brevity_penalty_closest``: an empty reference is skipped, the closer length wins,
    ties go to the shorter."""
    if candidate == 0:
        return current
    if abs(hyp - candidate) < abs(hyp - current) or (abs(hyp - candidate) == abs(hyp - current) and candidate < current):
        return candidate
    return current


def _info_weights(refs: Sequence[Sequence[Sequence[str]]]) -> dict[tuple[str, ...], float]:
    """NIST information weights over every reference: info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn)),
    with the total word count in place of count() for unigrams."""
    counts: Counter = Counter()
    total_words = 0
    for block in refs:
        for words in block:
            total_words += len(words)
            counts.update(_ngrams(words, MAX_NIST_N))
    # mteval tests the prefix with Perl truthiness, so a prefix that is the single token "0" counts as no
    # prefix and the n-gram is weighed against the total word count; kept for identical scores.
    return {
        g: math.log2((counts[g[:-1]] if len(g) > 1 and g[:-1] != ("0",) else total_words) / c)
        for g, c in counts.items()
    }


def bleu_nist(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, float]:
    """Corpus BLEU (4-gram, mteval-v13a smoothing, closest reference length) and NIST (5-gram), as the E2E
    script gets them from mteval-v13a-sig.pl.

    Args:
        predictions: one output per MR.
        references: the references of each MR (any number ≥ 1 each).

    Raises:
        ValueError: the counts differ, or an MR has no reference.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference blocks.")
    if not predictions:
        return 0.0, 0.0
    if any(len(block) == 0 for block in references):
        raise ValueError("Every MR needs at least one reference.")
    # No padding: the E2E script pads every MR to the largest reference count with empty references, but
    # mteval-v13a-sig ignores an empty reference everywhere (n-gram counts, closest length, NIST's reference
    # count), so the padding changes no number.
    refs = [[mteval_tokenize(r) for r in block] for block in references]
    hyps = [mteval_tokenize(p) for p in predictions]
    info = _info_weights(refs)

    match = [0] * (MAX_NIST_N + 1)
    tst = [0] * (MAX_NIST_N + 1)
    tst_info = [0.0] * (MAX_NIST_N + 1)
    ref_words = nonempty_refs = 0
    ref_length = 0
    for hyp, block in zip(hyps, refs):
        for n in range(1, MAX_NIST_N + 1):
            tst[n] += max(len(hyp) - n + 1, 0)
        best: Counter = Counter()  # clip counts: the most times each n-gram occurs in one reference
        closest = len(block[0])
        for words in block:
            ref_words += len(words)
            nonempty_refs += bool(words)
            for g, c in _ngrams(words, MAX_NIST_N).items():
                best[g] = max(best[g], c)
            closest = _closest(closest, len(words), len(hyp))
        ref_length += closest
        for g, c in _ngrams(hyp, MAX_NIST_N).items():
            if g in best:
                m = min(c, best[g])
                match[len(g)] += m
                tst_info[len(g)] += info[g] * m

    # BLEU: mteval-v13a's default (smoothed) bleu_score on corpus totals; the k-th order without a match
    # counts 1 / (2^k · hypothesis n-grams) instead of 0
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

    # NIST: information-weighted precisions summed over n, times the length penalty on the output length over
    # the reference words divided by the MEAN NUMBER OF NON-EMPTY REFERENCES PER MR (mteval-v13a-sig's
    # score_system: cum_ref_count / cum_seg_count). Stock mteval-v13a divides by the number of reference sets,
    # which after the E2E padding is the largest count: that overstated NIST for short outputs when counts differ.
    nist = sum(tst_info[n] / max(tst[n], 1) for n in range(1, MAX_NIST_N + 1))
    if ref_words:  # every reference empty: no n-gram can match, NIST is 0 (mteval divides by zero and dies)
        nist *= nist_length_penalty(tst[1] / (ref_words / (nonempty_refs / len(refs))))
    return bleu, nist


def nist_length_penalty(ratio: float) -> float:
    """exp(−β log²(ratio)) below ratio 1, with β chosen so that the penalty is 0.5 at ratio 2/3 (mteval)."""
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    beta = -math.log(0.5) / math.log(1.5) ** 2
    return math.exp(-beta * math.log(ratio) ** 2)


def require_java() -> str:
    """Path of ``java``, or a RuntimeError that says what to install."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(
            "METEOR and the PTB tokeniser of the official E2E metrics run on Java, and no `java` is on PATH. "
            "Install a Java runtime (Debian/Ubuntu: `apt-get install default-jre-headless`; elsewhere any "
            "OpenJDK ≥ 8), then score again."
        )
    return java


def _one_line(text: str) -> str:
    # The PTB tokeniser reads one caption per line and the results are matched back by position, so no
    # caption may contain a line break of any kind (str.split also splits on \r, \x85, \u2028, ...).
    return " ".join(text.split())


def coco_metrics_by_segment(
    predictions: Sequence[str], references: Sequence[Sequence[str]],
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """METEOR, ROUGE-L and CIDEr(-D) as the COCO caption code computes them, after PTB tokenisation:
    corpus scores and one score per MR (as the official script's ``--sent-level`` output)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference blocks.")
    require_java()
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    keys = [f"inst-{i}" for i in range(len(predictions))]
    gts = {k: [{"caption": _one_line(r)} for r in refs] for k, refs in zip(keys, references)}
    res = {k: [{"caption": _one_line(p)}] for k, p in zip(keys, predictions)}
    tok = PTBTokenizer()
    gts_tok, res_tok = tok.tokenize(gts), tok.tokenize(res)
    if any(len(gts_tok.get(k, ())) != len(gts[k]) or len(res_tok.get(k, ())) != 1 for k in keys):
        raise RuntimeError("The PTB tokeniser returned a different number of lines than it was given.")
    corpus: dict[str, float] = {}
    segments: dict[str, list[float]] = {}
    meteor = Meteor()  # one JVM; its __del__ closes it when this function returns
    for name, scorer in (("METEOR", meteor), ("ROUGE_L", Rouge()), ("CIDEr", Cider())):
        score, per_segment = scorer.compute_score(gts_tok, res_tok)
        corpus[name] = float(score)
        segments[name] = [float(s) for s in per_segment]
    return corpus, segments


def coco_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus METEOR, ROUGE-L and CIDEr(-D) (see :func:`coco_metrics_by_segment`)."""
    return coco_metrics_by_segment(predictions, references)[0]


def score_e2e(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """The five official metrics for one output per MR against all of that MR's references.

    Returns:
        ``{"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}`` on the official script's scales.

    Raises:
        ValueError: counts differ, nothing to score, or an MR without references.
        RuntimeError: no Java runtime (METEOR and the PTB tokeniser need one).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference blocks: give one "
                         "prediction per MR.")
    if not predictions:
        raise ValueError("Nothing to score: no predictions.")
    if any(not refs for refs in references):
        raise ValueError("Every MR needs at least one reference.")
    bleu, nist = bleu_nist(predictions, references)
    return {"BLEU": bleu, "NIST": nist, **coco_metrics(predictions, references)}
