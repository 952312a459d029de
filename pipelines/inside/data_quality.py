"""How pre-training text is filtered before a model sees it (issue 38, safety and data), on a small
sample of raw web text or on the user's: the filters the field's pipelines run, each document kept
or dropped with the rule that dropped it.

- **Quality heuristics** (Gopher, Rae et al. 2021, appendix A): at least 50 words, a mean word
  length between 3 and 10 characters, few symbols (# and ...) per word, most words alphabetic, at
  most 90% of lines bullets, and at least two English stop words (real prose has them; menus,
  keyword spam and gibberish do not).
- **Deduplication**: exact copies (the same text after normalising case and spaces), and near
  copies by MinHash LSH (`datasketch`) on word 3-grams: two documents whose estimated Jaccard
  similarity passes the threshold keep only the first.
- **Perplexity** (CCNet, Wenzek et al. 2020): a language model scores each document; text it finds
  very unlikely (gibberish, spam, broken markup) is dropped. Here the model is the app's own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from pipelines import knobs
from pipelines.config import DATASETS
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob

SAMPLE = DATASETS / "raw_web_sample.txt"
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})  # Gopher's list
MAX_DOCUMENTS = 200
MAX_CHARS = 200_000
SHINGLE = 3  # words per shingle for MinHash


@dataclass(frozen=True)
class QualitySpec:
    """The filters' thresholds (Gopher's and CCNet's defaults where they exist)."""

    min_words: int = knob(
        50, help="fewest words a document may have (Gopher: 50)", label="Min words", low=1, high=10_000, slider=False
    )
    max_symbol_ratio: float = knob(
        0.1, help="most '#' and '...' per word (Gopher: 0.1)", label="Max symbols per word", low=0, high=1, step=0.01
    )
    min_stop_words: int = knob(
        2,
        help="fewest of the 8 stop words the, be, to, of, and, that, have, with (Gopher: 2)",
        label="Min stop words",
        low=0,
        high=8,
    )
    near_duplicate: float = knob(
        0.7,
        help="estimated Jaccard similarity of word 3-grams above which a later document is a near copy",
        label="Near-duplicate threshold",
        low=0.1,
        high=0.95,  # MinHash LSH with 128 permutations needs at least two bands
        step=0.05,
    )
    max_perplexity: float = knob(
        200.0,
        help="the model's perplexity above which a document is dropped (0 = do not score)",
        label="Max perplexity",
        low=0,
        high=100_000,
        slider=False,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


def sample_text() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def split_documents(text: str) -> list[str]:
    """Documents are separated by blank lines."""
    if not (text or "").strip():
        raise InvalidParameter("text", "is empty: paste documents separated by blank lines")
    if len(text) > MAX_CHARS:
        raise InvalidParameter("text", f"is {len(text):,} characters; at most {MAX_CHARS:,}")
    documents = [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidParameter("text", f"has {len(documents)} documents; at most {MAX_DOCUMENTS}")
    return documents


def heuristics(document: str, spec: QualitySpec) -> tuple[dict[str, float], list[str]]:
    """Gopher's statistics of one document, and the rules it breaks."""
    words = document.split()
    lines = [line for line in document.splitlines() if line.strip()]
    count = len(words)
    stats = {
        "words": float(count),
        "mean_word_length": sum(len(w) for w in words) / count if count else 0.0,
        "symbol_ratio": (document.count("#") + document.count("...")) / max(1, count),
        "alphabetic_share": sum(any(c.isalpha() for c in w) for w in words) / max(1, count),
        "bullet_share": sum(line.lstrip().startswith(("-", "*", "•")) for line in lines) / max(1, len(lines)),
        "stop_words": float(len({w.lower().strip(".,;:!?") for w in words} & STOP_WORDS)),
    }
    broken = []
    if count < spec.min_words:
        broken.append(f"fewer than {spec.min_words} words")
    if count and not 3 <= stats["mean_word_length"] <= 10:
        broken.append("mean word length outside 3-10")
    if stats["symbol_ratio"] > spec.max_symbol_ratio:
        broken.append("too many symbols")
    if stats["alphabetic_share"] < 0.8:
        broken.append("under 80% of words alphabetic")
    if stats["bullet_share"] > 0.9:
        broken.append("mostly bullet lines")
    if stats["stop_words"] < spec.min_stop_words:
        broken.append(f"fewer than {spec.min_stop_words} stop words")
    return stats, broken


def _shingles(document: str) -> set[bytes]:
    words = re.findall(r"\w+", document.lower())
    return {" ".join(words[i : i + SHINGLE]).encode() for i in range(max(1, len(words) - SHINGLE + 1))}


def duplicates(documents: list[str], threshold: float) -> dict[int, tuple[int, str]]:
    """index -> (the earlier document it copies, "exact" or "near"); the first of a group is kept."""
    from datasketch import MinHash, MinHashLSH

    found: dict[int, tuple[int, str]] = {}
    seen: dict[str, int] = {}
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    for index, document in enumerate(documents):
        key = hashlib.sha256(" ".join(document.lower().split()).encode()).hexdigest()
        if key in seen:
            found[index] = (seen[key], "exact")
            continue
        seen[key] = index
        signature = MinHash(num_perm=128, seed=1)
        signature.update_batch(list(_shingles(document)))
        near = sorted(int(other) for other in lsh.query(signature))
        if near:
            found[index] = (near[0], "near")
            continue
        lsh.insert(str(index), signature)
    return found


def filter_documents(text: str, spec: QualitySpec | None = None, *, handle: Any = None) -> dict[str, Any]:
    """Every document with its statistics, kept or dropped and why; how many each rule dropped."""
    from pipelines import inside

    spec = spec or QualitySpec()
    documents = split_documents(text)
    copies = duplicates(documents, spec.near_duplicate)
    rows = []
    for index, document in enumerate(documents):
        stats, reasons = heuristics(document, spec)
        if index in copies:
            original, kind = copies[index]
            reasons.append(f"{kind} duplicate of document {original + 1}")
        perplexity = None
        if spec.max_perplexity and handle is not None and len(document.split()) >= 2:
            perplexity = inside.perplexity(handle, document, truncate=True)["perplexity"]
            if perplexity > spec.max_perplexity:
                reasons.append(f"perplexity {perplexity:,.0f} above {spec.max_perplexity:,.0f}")
        rows.append({"index": index + 1, "text": document, **stats, "perplexity": perplexity, "dropped": reasons})
    kept = sum(1 for row in rows if not row["dropped"])
    return {"documents": rows, "kept": kept, "dropped": len(rows) - kept}
