"""Finding the passages for a question: dense (embeddings), BM25 (words), or both fused.

Dense retrieval finds paraphrases ("car" ~ "vehicle"); BM25 finds rare exact words (names,
codes) that embeddings blur. Hybrid merges the two rankings with reciprocal-rank fusion,
score = sum over rankings of 1 / (60 + rank), which needs no score calibration between them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines import knobs
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.rag import embedder, store

MODES = ("dense", "bm25", "hybrid")
RRF_K = 60
MAX_K = 50


@dataclass(frozen=True)
class SearchSpec:
    """How a question finds its passages: the RAG tab's controls, checked again by `search` for every caller."""

    mode: str = knob(
        "hybrid",
        help="dense: embedding similarity; bm25: shared words; hybrid: both, fused by reciprocal rank",
        label="Retrieval",
        choices=MODES,
    )
    k: int = knob(
        5,
        help="passages retrieved and put in the prompt",
        label="Passages (k)",
        info="raise it if documents seem ignored",
        low=1,
        high=MAX_K,
        step=1,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


@dataclass(frozen=True)
class Hit:
    chunk: store.ChunkRecord
    score: float
    rank: int  # 1-based

    def to_json(self) -> dict:
        return {
            "text": self.chunk.text,
            "source": self.chunk.source,
            "page": self.chunk.page,
            "score": round(float(self.score), 6),
            "start": self.chunk.start,
            "end": self.chunk.end,
            "chunk_id": self.chunk.id,
        }


def _dense(generation: store.Generation, question: str, k: int) -> list[tuple[int, float]]:
    if not generation.chunks:
        return []
    query = embedder.embed([question])
    scores, ids = generation.index.search(query, min(k, len(generation.chunks)))
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=False) if i >= 0]


def _bm25(generation: store.Generation, question: str, k: int) -> list[tuple[int, float]]:
    if not generation.chunks or generation.bm25 is None:
        return []
    tokens = store._bm25_tokens([question])
    if not tokens or not tokens[0]:
        return []  # only stop words: nothing for BM25 to match
    results, scores = generation.bm25.retrieve(tokens, k=min(k, len(generation.chunks)), show_progress=False)
    return [(int(i), float(s)) for i, s in zip(results[0], scores[0], strict=False) if s > 0]


def search(collection: str, question: str, *, k: int = 5, mode: str = "hybrid") -> list[Hit]:
    """The top-k chunks for a question in the collection."""
    SearchSpec(mode=mode, k=k)  # refuses what the RAG tab's controls cannot set
    if not question or not question.strip():
        raise InvalidParameter("question", "is empty")
    generation = store.load(collection)
    if mode == "dense":
        ranked = _dense(generation, question, k)
    elif mode == "bm25":
        ranked = _bm25(generation, question, k)
    else:
        depth = max(4 * k, 20)
        fused: dict[int, float] = {}
        for ranking in (_dense(generation, question, depth), _bm25(generation, question, depth)):
            for rank, (chunk_id, _) in enumerate(ranking, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        ranked = sorted(fused.items(), key=lambda item: -item[1])[:k]
    return [Hit(generation.chunks[i], s, rank) for rank, (i, s) in enumerate(ranked[:k], start=1)]
