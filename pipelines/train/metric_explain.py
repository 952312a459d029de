"""ROUGE-L and BLEU of one reference/candidate pair, shown step by step.

Why: a score of 0.31 teaches nothing; the longest common subsequence, or the clipped n-gram
counts and the brevity penalty, show what the number rewards (shared words in order, exact
n-grams) and what it misses (meaning). Both use the same libraries and settings as the
project's metric modules (`rouge_l`: rouge-score with the Porter stemmer; `bleu`: sacrebleu's
13a tokeniser), so the figures here equal the ones the evaluations report for a single pair.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from pipelines.errors import InvalidParameter

MAX_CHARS = 20_000  # per text: the LCS table is quadratic in the number of words


@dataclass
class RougeLExplained:
    reference: list[str]  # the words ROUGE compares: lower-cased, stemmed
    candidate: list[str]
    matched_reference: list[int]  # positions of the longest common subsequence, in each text
    matched_candidate: list[int]
    precision: float  # LCS / candidate words
    recall: float  # LCS / reference words
    f1: float


@dataclass
class BleuExplained:
    precisions: list[float]  # clipped n-gram precision, n = 1..4, in percent
    matches: list[int]
    totals: list[int]
    brevity_penalty: float
    candidate_length: int
    reference_length: int
    bleu: float  # 0-100
    ngrams: list[list[tuple[str, int, int]]] = field(default_factory=list)  # per n: (n-gram, in candidate, credited)


def _check(reference: str, candidate: str) -> None:
    for name, text in (("reference", reference), ("candidate", candidate)):
        if not isinstance(text, str):
            raise InvalidParameter(name, "must be text")
        if len(text) > MAX_CHARS:
            raise InvalidParameter(name, f"is {len(text):,} characters; the explainer takes at most {MAX_CHARS:,}")


def rouge_l(reference: str, candidate: str) -> RougeLExplained:
    """ROUGE-L: the longest common subsequence of words, as precision, recall and F1."""
    from rouge_score import rouge_scorer

    _check(reference, candidate)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    ref = scorer._tokenizer.tokenize(reference)
    can = scorer._tokenizer.tokenize(candidate)
    table = rouge_scorer._lcs_table(ref, can)
    i, j = len(ref), len(can)
    pairs: list[tuple[int, int]] = []
    while i > 0 and j > 0:  # walk the table back along one longest subsequence
        if ref[i - 1] == can[j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i - 1][j] >= table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    pairs.reverse()
    lcs = len(pairs)
    precision = lcs / len(can) if can else 0.0
    recall = lcs / len(ref) if ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return RougeLExplained(ref, can, [p for p, _ in pairs], [q for _, q in pairs], precision, recall, f1)


def bleu(reference: str, candidate: str) -> BleuExplained:
    """BLEU of one pair: clipped 1-4-gram precisions, their geometric mean, the brevity penalty."""
    import sacrebleu

    _check(reference, candidate)
    metric = sacrebleu.metrics.BLEU(tokenize="13a")
    score = metric.corpus_score([candidate], [[reference]])
    tokenizer = metric.tokenizer
    ref_words = tokenizer(reference.rstrip()).split()
    can_words = tokenizer(candidate.rstrip()).split()
    ngrams = []
    for n in range(1, 5):
        in_ref = Counter(tuple(ref_words[k : k + n]) for k in range(len(ref_words) - n + 1))
        in_can = Counter(tuple(can_words[k : k + n]) for k in range(len(can_words) - n + 1))
        ngrams.append([(" ".join(g), c, min(c, in_ref[g])) for g, c in in_can.items()])
    return BleuExplained(
        precisions=[float(p) for p in score.precisions],
        matches=list(score.counts),
        totals=list(score.totals),
        brevity_penalty=float(score.bp),
        candidate_length=int(score.sys_len),
        reference_length=int(score.ref_len),
        bleu=float(score.score),
        ngrams=ngrams,
    )


def geometric_mean(precisions: list[float]) -> float:
    """exp(mean log p_n): zero when any precision is zero, which is why short answers often score 0."""
    if any(p <= 0 for p in precisions):
        return 0.0
    return math.exp(sum(math.log(p) for p in precisions) / len(precisions))
