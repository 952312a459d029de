"""Which retrieved passage supports each sentence of an answer, checked after it is written.

Small models ignore the instruction to cite: SmolLM2-135M answers from the passages but never
writes [n]. So every sentence is checked against the passages that were in the prompt:

* **word support**: the share of the sentence's content words (stop words, the question's
  framing like "the answer is" removed) found in the passages. Passages are picked greedily, the
  one covering most of the sentence first, then others while each adds words, so a sentence that
  joins two passages cites both.
* **meaning**: the best cosine similarity between the sentence and any sentence of the chosen
  passages, with the same embedder that indexed them. Word overlap alone would credit a sentence
  that reuses a passage's words to say something else; similarity alone credits a right-sounding
  sentence with an invented number.

A sentence is *supported* when both clear their thresholds, chosen on the bundled model's answers
to the test corpus' questions (tests/rag_corpus.py): every sentence taken from a passage scored at
least 0.67 word support and 0.42 similarity; every invented one (a wrong year, "Paris", "over
100 years") at most 0.38 word support. Content words the passages never mention are listed, so a
mostly supported sentence with an invented detail ("first lit on 12 July 1872") shows it.

This is an estimate of support, not a proof of entailment (it cannot see a negation), and the UI
says so. Citations the model does write are kept and checked the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from pipelines.rag import chunking
from pipelines.rag.retrieval import Hit

MIN_WORD_SUPPORT = 0.6
MIN_SIMILARITY = 0.3
MIN_NEW_WORDS = 2  # a further passage is cited only if it supports words the earlier ones did not

# Function words beyond BM25's short list (bm25s' 33 English stop words), which carry no claim.
FUNCTION_WORDS = {
    "am",
    "been",
    "being",
    "can",
    "could",
    "did",
    "do",
    "does",
    "had",
    "has",
    "have",
    "he",
    "her",
    "hers",
    "him",
    "his",
    "i",
    "its",
    "me",
    "my",
    "our",
    "she",
    "so",
    "than",
    "them",
    "those",
    "us",
    "very",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "why",
    "how",
    "would",
    "you",
    "your",
    "also",
    "about",
    "from",
    "all",
    "any",
    "some",
    "there",
    "here",
    "yes",
    "just",
    "only",
    "both",
    "each",
    "s",
}
# Words that frame an answer rather than claim anything ("The answer is: ...", "The documents do not say").
FRAMING = {
    "answer",
    "answers",
    "question",
    "questions",
    "passage",
    "passages",
    "context",
    "document",
    "documents",
    "text",
    "say",
    "says",
    "said",
    "according",
    "mention",
    "mentions",
    "mentioned",
    "information",
    "provided",
    "based",
    "given",
    "states",
    "stated",
}
_CITATION = re.compile(r"\[([\d,\s]+)\]")
_WORD = re.compile(r"\w+(?:['’-]\w+)*")  # "don't", "T-shirt" and "well-known" are one word each


@dataclass
class SentenceSupport:
    sentence: str
    start: int  # character offsets in the answer
    end: int
    cited: list[int] = field(default_factory=list)  # passage numbers the model wrote in this sentence
    passages: list[int] = field(default_factory=list)  # passages found to support it, best first
    word_support: float = 0.0
    similarity: float = 0.0
    unsupported_words: list[str] = field(default_factory=list)
    claim: bool = True  # False for framing-only sentences ("The answer is:"), which need no source

    @property
    def supported(self) -> bool:
        return self.claim and bool(self.passages)

    def to_json(self) -> dict:
        return {**asdict(self), "supported": self.supported}


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN  # the list BM25 retrieval already uses

    return frozenset(STOPWORDS_EN) | FUNCTION_WORDS | FRAMING


def _normal(word: str) -> str:
    """Lower case with the commonest endings folded -- plurals, possessives, -ed, -ing and a final e
    ("crêpes" ~ "crêpe", "nicknamed" ~ "nickname", "opening" ~ "open"): enough for matching a sentence
    against its passage, no stemmer needed (a sentence's "nickname" is its passage's "nicknamed")."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def _words(text: str, stop: frozenset[str]) -> list[tuple[str, str]]:
    """(matching form, word as written) for each content word; citation brackets are not words, and
    neither is a lone letter (a fragment is no claim: "T" was listed as unsupported)."""
    return [(_normal(w), w) for w in _WORD.findall(_CITATION.sub(" ", text)) if len(w) > 1 and w.lower() not in stop]


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of an answer."""
    return chunking.sentence_spans(text, lines=True)


def citations(text: str, n_passages: int) -> list[int]:
    """Passage numbers written as [n] or [n, m], in order of first use, limited to real passages."""
    found: list[int] = []
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            part = part.strip()
            if part.isdigit() and 1 <= int(part) <= n_passages and int(part) not in found:
                found.append(int(part))
    return found


def _cover(words: list[str], passage_words: list[set[str]]) -> tuple[list[int], set[str]]:
    """Greedy set cover: passage indexes (best first) and the words they support."""
    chosen: list[int] = []
    covered: set[str] = set()
    needed = set(words)
    while True:
        gains = [(len((needed - covered) & p), -i) for i, p in enumerate(passage_words) if i not in chosen]
        if not gains:
            break
        gain, neg_index = max(gains)
        if gain < (MIN_NEW_WORDS if chosen else 1):
            break
        chosen.append(-neg_index)
        covered |= needed & passage_words[-neg_index]
    return chosen, covered


def attribute(
    answer: str, hits: Sequence[Hit], embed: Callable[[Sequence[str]], np.ndarray] | None = None
) -> list[SentenceSupport]:
    """One SentenceSupport per sentence of `answer`; `hits` are the passages numbered [1].. in the prompt."""
    if embed is None:
        from pipelines.rag.embedder import embed as embed_texts

        embed = embed_texts
    stop = _stopwords()
    passage_words = [{normal for normal, _ in _words(h.chunk.text, stop)} for h in hits]
    passage_sentences = [
        [h.chunk.text[s:e] for s, e in chunking.sentence_spans(h.chunk.text)] or [h.chunk.text] for h in hits
    ]
    results: list[SentenceSupport] = []
    pending: list[
        tuple[SentenceSupport, list[int], list[int]]
    ] = []  # (item, passages to compare with, passages chosen)
    for start, end in sentences(answer):
        text = answer[start:end]
        item = SentenceSupport(text, start, end, cited=citations(text, len(hits)))
        results.append(item)
        written = _words(text, stop)
        words = [normal for normal, _ in written]
        if not words:
            item.claim = False
            continue
        chosen, covered = _cover(words, passage_words)
        item.word_support = round(sum(w in covered for w in words) / len(words), 3)
        item.unsupported_words = list(dict.fromkeys(original for normal, original in written if normal not in covered))
        candidates = list(dict.fromkeys(chosen + [c - 1 for c in item.cited]))
        if candidates:
            pending.append((item, candidates, chosen))
    if not pending:
        return results
    # one embedding call: every sentence to check, then each needed passage's sentences once
    needed = sorted({c for _, candidates, _ in pending for c in candidates})
    owner = np.array([c for c in needed for _ in passage_sentences[c]])
    vectors = embed(
        [_CITATION.sub(" ", item.sentence) for item, _, _ in pending]
        + [t for c in needed for t in passage_sentences[c]]
    )
    questions, passage_vectors = vectors[: len(pending)], vectors[len(pending) :]
    for row, (item, candidates, chosen) in enumerate(pending):
        item.similarity = round(float((passage_vectors[np.isin(owner, candidates)] @ questions[row]).max()), 3)
        if item.word_support >= MIN_WORD_SUPPORT and item.similarity >= MIN_SIMILARITY:
            item.passages = [c + 1 for c in chosen]
    return results


def supporting_passages(supports: Sequence[SentenceSupport]) -> list[int]:
    """Every passage number cited by the model or found to support a sentence, in order of first use."""
    found: list[int] = []
    for item in supports:
        for number in item.cited + item.passages:
            if number not in found:
                found.append(number)
    return found


def supports(answer: str, hits: Sequence[Hit]) -> list[SentenceSupport] | None:
    """`attribute`, or None where the embedder cannot load: the answer still shows, with only the
    citations the model wrote."""
    from pipelines.engine.model_source import EmbedderUnavailable

    try:
        return attribute(answer, hits)
    except EmbedderUnavailable:
        return None
