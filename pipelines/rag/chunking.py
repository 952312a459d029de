"""Splitting text into overlapping chunks measured in the embedder's own tokens.

all-MiniLM-L6-v2 reads at most 256 word pieces and silently ignores the rest, so chunks are
measured with its tokenizer, not in characters. Chunks end at paragraph and sentence boundaries
where possible; a single sentence longer than a chunk is split by tokens. Each chunk keeps its
character offsets in the page text, so a citation can show the exact passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipelines import knobs
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob

DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 40
MAX_CHUNK_TOKENS = 254  # the embedder reads 256 word pieces, two of them [CLS] and [SEP]
CHARS_PER_TOKEN = 6  # a chunk has at most size x 6 characters (English prose averages ~4.5 per word piece)

# A sentence ends at . ! ? or … followed by space and a capital, digit, quote or bracket: "3.5",
# "e.g. this" and a citation "[1]." after a sentence stay inside it.
_SENTENCE_END = r"(?<=[.!?…])\s+(?=[A-Z0-9\"'“(\[])"
_PARAGRAPHS = re.compile(_SENTENCE_END + r"|\n\s*\n")  # documents: a line break alone is layout
_LINES = re.compile(_SENTENCE_END + r"|\s*\n\s*")  # answers: each line is a claim of its own


@dataclass(frozen=True)
class Chunk:
    text: str
    page: int | None
    start: int  # character offsets in the section's text
    end: int
    tokens: int


def sentence_spans(text: str, *, lines: bool = False) -> list[tuple[int, int]]:
    """(start, end) of each sentence, without surrounding space; paragraph breaks (or, with
    `lines`, every line break) are boundaries too. Chunking and answer attribution both use it."""
    spans, cursor = [], 0
    for match in (_LINES if lines else _PARAGRAPHS).finditer(text):
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, len(text)))
    trimmed = []
    for start, end in spans:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            trimmed.append((start, end))
    return trimmed


def _at_most_chars(spans: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Spans cut to at most `limit` characters.

    The embedder's WordPiece reads any word over 100 characters as one [UNK]: an unbroken 100 kB
    string counted as a single token, became one chunk, and then no question retrieving it fit the
    model's context. Token windows cannot cut what is one token, so characters bound it too.
    """
    out: list[tuple[int, int]] = []
    for start, end in spans:
        out.extend((s, min(s + limit, end)) for s in range(start, end, limit))
    return out


def _split_long(text: str, start: int, end: int, tokenizer: Any, size: int, overlap: int) -> list[tuple[int, int, int]]:
    """A span longer than `size` tokens, cut into token windows: (start, end, tokens)."""
    encoded = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    pieces, step = [], max(1, size - overlap)
    for first in range(0, len(offsets), step):
        window = offsets[first : first + size]
        pieces.append((start + window[0][0], start + window[-1][1], len(window)))
        if first + size >= len(offsets):
            break
    return pieces


@dataclass(frozen=True)
class ChunkSpec:
    """How a collection cuts its documents (one definition for the RAG tab, the CLI and the store)."""

    chunk_size: int = knob(
        DEFAULT_CHUNK_TOKENS,
        help="tokens per chunk, counted by the embedder's tokenizer",
        label="Chunk size (tokens)",
        info=f"the embedder reads at most {MAX_CHUNK_TOKENS}",
        low=16,
        high=MAX_CHUNK_TOKENS,
        why="the embedder's limit",
        step=1,
    )
    overlap: int = knob(
        DEFAULT_OVERLAP_TOKENS,
        help="tokens each chunk repeats from the one before, so a sentence cut in two is found whole",
        label="Overlap (tokens)",
        low=0,
        high=MAX_CHUNK_TOKENS - 1,
        step=1,
    )

    def __post_init__(self) -> None:
        knobs.check(self)
        if self.overlap >= self.chunk_size:
            raise InvalidParameter(
                "overlap", f"must be smaller than the chunk size ({self.chunk_size}), got {self.overlap}"
            )


def chunk_text(
    text: str,
    page: int | None,
    tokenizer: Any,
    *,
    size: int = DEFAULT_CHUNK_TOKENS,
    overlap: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    ChunkSpec(chunk_size=size, overlap=overlap)  # refuses what the RAG tab's controls cannot set
    max_chars = size * CHARS_PER_TOKEN
    spans = _at_most_chars(sentence_spans(text), max_chars)
    if not spans:
        return []
    counts = [len(ids) for ids in tokenizer([text[s:e] for s, e in spans], add_special_tokens=False)["input_ids"]]
    units: list[tuple[int, int, int]] = []
    for (s, e), n in zip(spans, counts, strict=False):
        units.extend(_split_long(text, s, e, tokenizer, size, overlap) if n > size else [(s, e, n)])

    chunks: list[Chunk] = []
    current: list[tuple[int, int, int]] = []
    total = 0

    def flush() -> None:
        start, end = current[0][0], current[-1][1]
        chunks.append(Chunk(text[start:end], page, start, end, total))

    for unit in units:
        if current and (total + unit[2] > size or unit[1] - current[0][0] > max_chars):
            flush()
            carried: list[tuple[int, int, int]] = []
            carried_tokens = 0
            for previous in reversed(current):  # trailing sentences become the overlap
                if carried_tokens + previous[2] > overlap or unit[1] - previous[0] > max_chars:
                    break
                carried.insert(0, previous)
                carried_tokens += previous[2]
            current, total = carried, carried_tokens
        current.append(unit)
        total += unit[2]
    if current and (not chunks or current[-1][1] > chunks[-1].end):
        flush()
    return chunks
