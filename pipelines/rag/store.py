"""Collections on disk: `<data>/rag/<collection>/` with uploads, chunks, vectors and indexes.

Every change (ingest, removal) writes a complete new *generation* directory -- chunk table,
embeddings, FAISS index, BM25 index, document list -- and then switches the `CURRENT` pointer
with one atomic rename. A crash at any moment leaves the previous generation intact and in use.

Embeddings are the source of truth: the FAISS index is rebuilt from them, exact
(`IndexIDMap(IndexFlatIP)`, normalised vectors -> cosine) for small collections and HNSW above
`HNSW_THRESHOLD` chunks; since every generation is rebuilt, removing a document works for both.
Each collection records its embedder and dimension and refuses a mismatched one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import Settings, get_settings
from pipelines.errors import PlaygroundError
from pipelines.rag import chunking, embedder, parsing
from pipelines.store import personal_data
from pipelines.store.files import UploadError, copy_upload, safe_filename, write_atomic

HNSW_THRESHOLD = 20_000
NAME_MAX = 64


class CollectionError(PlaygroundError, ValueError):
    """A collection is missing, misnamed or incompatible; the message says what to do."""


@dataclass
class DocumentInfo:
    id: str  # the first 16 hex digits of the content's sha256
    name: str
    kind: str
    sha256: str
    pages: int | None
    chunks: int
    characters: int
    added: float
    stored_as: str
    added_by: str = ""  # who uploaded it ("" before sign-in existed, or with no sign-in): they may remove it


@dataclass
class ChunkRecord:
    id: int
    doc_id: str
    source: str
    page: int | None
    start: int
    end: int
    text: str


@dataclass
class IngestReport:
    ingested: list[dict[str, Any]] = field(default_factory=list)  # {"file", "chunks"}
    unchanged: list[dict[str, Any]] = field(default_factory=list)  # re-uploads of identical content
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"file", "error"}

    def to_json(self) -> dict[str, Any]:
        return {"ingested": self.ingested, "unchanged": self.unchanged, "errors": self.errors}


def check_name(name: str) -> str:
    cleaned = (name or "").strip()
    if not cleaned or len(cleaned) > NAME_MAX or cleaned != safe_filename(cleaned) or cleaned.startswith("."):
        raise CollectionError(
            f"invalid collection name {name!r}: use letters, digits, spaces, '.', '_' or '-' (max {NAME_MAX})"
        )
    return cleaned


def root(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "rag"


def collection_dir(name: str, settings: Settings | None = None) -> Path:
    return root(settings) / check_name(name)


def collection_names() -> list[str]:
    """The collections there are, read without loading any index (the RAG tab lists them at start-up)."""
    base = root()
    if not base.is_dir():
        return []
    return [
        path.name
        for path in sorted(base.iterdir())
        if path.is_dir() and (path / "collection.json").is_file() and _valid_name(path.name)
    ]


def _valid_name(name: str) -> bool:
    try:
        return check_name(name) == name
    except CollectionError:
        return False


def list_collections() -> list[dict[str, Any]]:
    """Every collection's settings with its document and chunk counts (this loads each index)."""
    found = []
    for name in collection_names():
        info = meta(name)
        try:
            generation = load(name)
            info.update(documents=len(generation.documents), chunks=len(generation.chunks))
        except CollectionError:
            info.update(documents=None, chunks=None)
        found.append(info)
    return found


def create(
    name: str, *, chunk_size: int = chunking.DEFAULT_CHUNK_TOKENS, overlap: int = chunking.DEFAULT_OVERLAP_TOKENS
) -> Path:
    path = collection_dir(name)
    if (path / "collection.json").exists():
        raise CollectionError(f"a collection named {name!r} already exists")
    chunking.ChunkSpec(chunk_size=chunk_size, overlap=overlap)  # InvalidParameter names the setting
    (path / "documents").mkdir(parents=True, exist_ok=True)
    meta = {
        "name": name,
        "embedder": embedder.EMBEDDER_NAME,
        "dimension": embedder.dimension(),
        "chunk_size": chunk_size,
        "overlap": overlap,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_atomic(path / "collection.json", json.dumps(meta, indent=2))
    return path


def delete(name: str) -> None:
    path = collection_dir(name)
    if not path.exists():
        raise CollectionError(f"no collection named {name!r}")
    trash = path.parent / f".trash-{path.name}-{time.time_ns()}"
    os.replace(path, trash)  # disappears at once; the files go after
    shutil.rmtree(trash, ignore_errors=True)
    _cache.pop(name, None)


def set_refuse_personal_data(name: str, refuse: bool) -> None:
    """The collection's policy for documents holding personal data: refused, or indexed and reported."""
    with _writer(name) as path:
        info = meta(name)
        info["refuse_personal_data"] = bool(refuse)
        write_atomic(path / "collection.json", json.dumps(info, indent=2))


def refuses_personal_data(name: str) -> bool:
    return _refuses(meta(name))


def _refuses(info: dict[str, Any]) -> bool:
    return bool(info.get("refuse_personal_data", False))  # collections made before the policy: indexed


def meta(name: str) -> dict[str, Any]:
    path = collection_dir(name) / "collection.json"
    if not path.is_file():
        raise CollectionError(f"no collection named {name!r}")
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def _writer(name: str) -> Iterator[Path]:
    """One writer per collection at a time, across threads and processes."""
    path = collection_dir(name)
    if not (path / "collection.json").is_file():
        raise CollectionError(f"no collection named {name!r}")
    with _thread_locks.setdefault(name, threading.Lock()):
        with (path / ".lock").open("w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield path
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


_thread_locks: dict[str, threading.Lock] = {}


# --- a generation: everything one version of a collection needs to answer --------------------


@dataclass
class Generation:
    name: str
    directory: Path | None
    documents: list[DocumentInfo]
    chunks: list[ChunkRecord]
    embeddings: np.ndarray
    index: Any = None
    bm25: Any = None

    @property
    def index_kind(self) -> str:
        return "hnsw" if len(self.chunks) > HNSW_THRESHOLD else "exact"


def _build_faiss(embeddings: np.ndarray) -> Any:
    import faiss

    dim = embeddings.shape[1]
    if len(embeddings) > HNSW_THRESHOLD:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 64
        index.add(embeddings)  # HNSW numbers vectors 0..n-1: the same ids as the chunk table
        return index
    flat = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
    if len(embeddings):
        flat.add_with_ids(embeddings, np.arange(len(embeddings), dtype=np.int64))
    return flat


def _bm25_tokens(texts: Sequence[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def _build_bm25(texts: Sequence[str]) -> Any:
    import bm25s

    retriever = bm25s.BM25()
    if texts:
        retriever.index(_bm25_tokens(texts), show_progress=False)
    return retriever


def _write_generation(
    path: Path, documents: list[DocumentInfo], chunks: list[ChunkRecord], embeddings: np.ndarray
) -> str:
    import faiss

    name = f"gen-{time.time_ns()}"
    tmp = path / f".tmp-{name}"
    tmp.mkdir(parents=True)
    with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as handle:
        for chunk in chunks:
            handle.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
    np.save(tmp / "embeddings.npy", embeddings)
    faiss.write_index(_build_faiss(embeddings), str(tmp / "index.faiss"))
    if chunks:
        _build_bm25([c.text for c in chunks]).save(str(tmp / "bm25"))
    (tmp / "documents.json").write_text(json.dumps([asdict(d) for d in documents], indent=2), encoding="utf-8")
    os.replace(tmp, path / name)
    write_atomic(path / "CURRENT", name)  # the switch: one rename
    for old in path.glob("gen-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for stale in path.glob(".tmp-gen-*"):  # left by a crash
        shutil.rmtree(stale, ignore_errors=True)
    return name


_cache: OrderedDict[str, tuple[str, Generation]] = OrderedDict()
_cache_lock = threading.Lock()


def load(name: str) -> Generation:
    """The collection's current generation, cached in memory until it changes."""
    path = collection_dir(name)
    info = meta(name)
    if info.get("embedder") != embedder.EMBEDDER_NAME:
        raise CollectionError(
            f"collection {name!r} was indexed with {info.get('embedder')} ({info.get('dimension')} dimensions), not "
            f"{embedder.EMBEDDER_NAME}: re-index it (Re-index button, or delete and ingest again)"
        )
    pointer = path / "CURRENT"
    current = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    with _cache_lock:
        cached = _cache.get(name)
        if cached is not None and cached[0] == current:
            _cache.move_to_end(name)
            return cached[1]
    if not current:
        generation = Generation(name, None, [], [], np.zeros((0, info["dimension"]), dtype=np.float32))
    else:
        generation = _read_generation(name, path / current)
        if generation.embeddings.shape[1] != info["dimension"]:
            raise CollectionError(
                f"collection {name!r} has {generation.embeddings.shape[1]}-dimensional vectors; expected {info['dimension']}"
            )
    with _cache_lock:
        _cache[name] = (current, generation)
        while len(_cache) > 8:
            _cache.popitem(last=False)
    return generation


def _read_chunks(directory: Path) -> list[ChunkRecord]:
    """A generation's chunks (written by this module, one JSON object per line)."""
    with (directory / "chunks.jsonl").open(encoding="utf-8") as handle:
        return [ChunkRecord(**json.loads(line)) for line in handle if line.strip()]


def _read_generation(name: str, directory: Path) -> Generation:
    import bm25s
    import faiss

    chunks = _read_chunks(directory)
    documents = [DocumentInfo(**d) for d in json.loads((directory / "documents.json").read_text(encoding="utf-8"))]
    embeddings = np.load(directory / "embeddings.npy")
    index = faiss.read_index(str(directory / "index.faiss"))
    retriever = bm25s.BM25.load(str(directory / "bm25")) if (directory / "bm25").exists() else None
    return Generation(name, directory, documents, chunks, embeddings, index, retriever)


# --- changes -----------------------------------------------------------------------------------


def ingest_uploads(
    name: str,
    uploads: Sequence[str | Path],
    *,
    added_by: str = "",
    max_bytes: int,
    allowed_suffixes: tuple[str, ...],
) -> IngestReport:
    """Copy uploaded files (size and type checked) and ingest them; a refused upload is one error
    of the report, like a file that cannot be parsed, and the others still go in."""
    refused: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        accepted: list[tuple[str | Path, str]] = []
        for index, upload in enumerate(uploads):
            try:  # each upload in its own folder: sanitised names may collide
                copied = copy_upload(
                    upload, Path(tmp) / str(index), max_bytes=max_bytes, allowed_suffixes=allowed_suffixes
                )
            except UploadError as error:
                shown = safe_filename(Path(str(upload)).name)
                refused.append({"file": shown, "error": str(error).removeprefix(f"{shown}: ")})
                continue
            accepted.append((copied, copied.name))
        report = ingest(name, accepted, added_by=added_by) if accepted else IngestReport()
    report.errors[:0] = refused
    return report


def ingest(
    name: str,
    files: Sequence[tuple[str | Path, str]],
    added_by: str = "",
    *,
    refuse_personal_data: bool | None = None,
) -> IngestReport:
    """Add files (path, display name); each bad file is reported and the rest go in.

    A file whose content is already in the collection is a no-op (matched by sha256). Each file is
    scanned for personal data (e-mail addresses, phone numbers, card numbers, names) before it is
    indexed: what was found is reported with the file, and where the collection refuses personal
    data (its policy, or `refuse_personal_data` for this call) such a file is not indexed at all:
    an index serves its chunks to whoever asks.
    """
    report = IngestReport()
    with _writer(name) as path:
        info = meta(name)
        if refuse_personal_data is None:
            refuse_personal_data = _refuses(info)
        current = load(name)
        known = {d.sha256 for d in current.documents}
        documents = list(current.documents)
        chunks = list(current.chunks)
        new_texts: list[str] = []
        new_chunks: list[ChunkRecord] = []
        tokenizer = embedder.tokenizer()
        for source, display in files:
            display = safe_filename(display or Path(source).name, default="document.txt")
            try:
                parsed = parsing.parse(source, display)
            except parsing.ParseError as error:
                report.errors.append({"file": display, "error": str(error)})
                continue
            if parsed.sha256 in known:
                report.unchanged.append({"file": display, "chunks": 0})
                continue
            found = personal_data.summary(personal_data.scan("\n".join(sec.text for sec in parsed.sections)))
            if found["total"] and refuse_personal_data:
                report.errors.append(
                    {
                        "file": display,
                        "error": f"contains personal data: {personal_data.described(found)}; not indexed",
                        "personal_data": found,
                    }
                )
                continue
            doc_id = parsed.sha256[:16]
            pieces = [
                c
                for section in parsed.sections
                for c in chunking.chunk_text(
                    section.text, section.page, tokenizer, size=info["chunk_size"], overlap=info["overlap"]
                )
            ]
            if not pieces:
                report.errors.append({"file": display, "error": f"{display} contains no text to index"})
                continue
            stored_as = f"{doc_id}-{display}"
            shutil.copyfile(source, path / "documents" / stored_as)
            for piece in pieces:
                new_chunks.append(
                    ChunkRecord(
                        len(chunks) + len(new_chunks), doc_id, display, piece.page, piece.start, piece.end, piece.text
                    )
                )
                new_texts.append(piece.text)
            pages = max((s.page or 0) for s in parsed.sections) or None
            documents.append(
                DocumentInfo(
                    doc_id,
                    display,
                    parsed.kind,
                    parsed.sha256,
                    pages,
                    len(pieces),
                    parsed.characters,
                    time.time(),
                    stored_as,
                    added_by,
                )
            )
            known.add(parsed.sha256)
            report.ingested.append(
                {"file": display, "chunks": len(pieces), **({"personal_data": found} if found["total"] else {})}
            )
        if new_chunks:
            vectors = embedder.embed(new_texts)
            embeddings = np.concatenate([current.embeddings, vectors]) if len(current.embeddings) else vectors
            _write_generation(path, documents, chunks + new_chunks, embeddings)
    return report


def remove_document(name: str, doc_id: str, allowed: Callable[[DocumentInfo], bool] | None = None) -> DocumentInfo:
    """Remove one document (by id or file name); `allowed` may refuse it (CollectionError) under the write lock."""
    with _writer(name) as path:
        current = load(name)
        doc = next((d for d in current.documents if d.id == doc_id or d.name == doc_id), None)
        if doc is None:
            raise CollectionError(f"no document {doc_id!r} in {name!r}")
        if allowed is not None and not allowed(doc):
            raise CollectionError(
                f"{doc.name} was added by {doc.added_by or 'someone else'}: only they or an admin may remove it"
            )
        keep = [i for i, c in enumerate(current.chunks) if c.doc_id != doc.id]
        chunks = [replace(current.chunks[i], id=new_id) for new_id, i in enumerate(keep)]
        embeddings = current.embeddings[keep] if keep else np.zeros((0, current.embeddings.shape[1]), dtype=np.float32)
        _write_generation(path, [d for d in current.documents if d.id != doc.id], chunks, embeddings)
        (path / "documents" / doc.stored_as).unlink(missing_ok=True)
    return doc


def reindex(name: str) -> int:
    """Embed every chunk again with the current embedder (after an embedder change)."""
    with _writer(name) as path:
        info = meta(name)
        pointer = path / "CURRENT"
        if not pointer.is_file():
            return 0
        directory = path / pointer.read_text(encoding="utf-8").strip()
        chunks = _read_chunks(directory)
        documents = [DocumentInfo(**d) for d in json.loads((directory / "documents.json").read_text(encoding="utf-8"))]
        embeddings = embedder.embed([c.text for c in chunks])
        info.update(
            embedder=embedder.EMBEDDER_NAME,
            dimension=int(embeddings.shape[1]) if len(embeddings) else embedder.dimension(),
        )
        write_atomic(path / "collection.json", json.dumps(info, indent=2))
        _write_generation(path, documents, chunks, embeddings)
        return len(chunks)
