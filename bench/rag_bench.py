"""RAG throughput and latency, measured against a baseline in the same run.

1. Ingest: the project's whole path (parse, chunk, embed, write FAISS + BM25 atomically) in
   chunks/second, vs a bare `SentenceTransformer.encode` of exactly the chunks it produced
   (default 200-token chunks).
2. Query latency at `--chunks` (default 10,000) chunks: p50 / p95 per retrieval mode, the
   question's embedding included. These chunks are 48 tokens, so building the collection takes
   minutes rather than the ~11 minutes 10,000 full-size chunks need on a 2-core CPU; the search
   cost depends on the number of chunks, not their length.

Documents are generated from templates (no downloads), so the run is repeatable.

    python bench/rag_bench.py [--ingest-chunks 600] [--chunks 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

NOUNS = [
    "river",
    "bridge",
    "library",
    "orchard",
    "harbour",
    "museum",
    "railway",
    "market",
    "garden",
    "lighthouse",
    "factory",
    "school",
    "theatre",
    "observatory",
    "bakery",
    "mill",
    "castle",
    "forest",
    "valley",
    "island",
]
ADJECTIVES = ["old", "northern", "quiet", "busy", "restored", "famous", "small", "ancient", "modern", "coastal"]
VERBS = [
    "opened",
    "was rebuilt",
    "was extended",
    "closed briefly",
    "was painted",
    "hosted a festival",
    "won an award",
    "flooded",
]
PLACES = [
    "Arden",
    "Bexley",
    "Corran",
    "Dunmore",
    "Elsworth",
    "Fallow",
    "Garrick",
    "Holme",
    "Ilsby",
    "Jarrow",
    "Kettle",
    "Lorne",
]


def document(rng: random.Random, paragraphs: int) -> str:
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(3, 7)):
            sentences.append(
                f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} of {rng.choice(PLACES)} {rng.choice(VERBS)} in "
                f"{rng.randint(1800, 2025)}, and {rng.randint(2, 900)} people came to see the {rng.choice(NOUNS)}."
            )
        out.append(" ".join(sentences))
    return "\n\n".join(out)


def write_documents(folder: Path, target_chunks: int, seed: int, chunks_per_document: float) -> list[Path]:
    rng = random.Random(seed)
    files = []
    for index in range(max(1, round(target_chunks / chunks_per_document))):
        path = folder / f"doc-{seed}-{index:05d}.txt"
        path.write_text(document(rng, 8), encoding="utf-8")
        files.append(path)
    return files


def index_search_comparison(vectors, queries) -> dict:
    """The FAISS search alone (question already embedded): the exact index vs HNSW on the same vectors.

    Collections switch to HNSW above `store.HNSW_THRESHOLD` chunks; this shows what that buys and
    what it costs in recall at the benchmark's size.
    """
    import faiss
    import numpy as np

    dim = vectors.shape[1]
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction, hnsw.hnsw.efSearch = 80, 64
    hnsw.add(vectors)
    out, found = {}, {}
    for name, index in (("exact", exact), ("hnsw", hnsw)):
        index.search(queries[:1], 5)
        times = []
        for row in range(len(queries)):
            started = time.perf_counter()
            _, ids = index.search(queries[row : row + 1], 5)
            times.append((time.perf_counter() - started) * 1000)
            found.setdefault(name, []).append(set(ids[0].tolist()))
        out[f"{name}_ms"] = round(float(np.median(times)), 3)
    out["hnsw_recall@5"] = round(
        sum(len(a & b) for a, b in zip(found["exact"], found["hnsw"], strict=False)) / (5 * len(queries)), 3
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest-chunks", type=int, default=600)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PLAYGROUND_DATA_DIR"] = str(Path(tmp) / "data")
        from pipelines.rag import embedder, retrieval, store

        embedder.embed(["warm up the model"])
        docs = Path(tmp) / "docs"
        docs.mkdir()

        # 1. ingest vs bare encode of the same chunks
        files = write_documents(docs, args.ingest_chunks, seed=1, chunks_per_document=5.4)  # measured at 200 tokens
        store.create("ingest")
        started = time.perf_counter()
        store.ingest("ingest", [(f, f.name) for f in files])
        ingest_seconds = time.perf_counter() - started
        texts = [c.text for c in store.load("ingest").chunks]
        model = embedder.get()
        started = time.perf_counter()
        model.encode(texts, batch_size=embedder.BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)
        encode_seconds = time.perf_counter() - started
        project_rate, bare_rate = len(texts) / ingest_seconds, len(texts) / encode_seconds

        # 2. latency at N chunks (built in batches, like repeated uploads). Query cost depends on
        # how many chunks are indexed, not on their length, so short chunks keep the build quick.
        store.create("latency", chunk_size=48, overlap=0)
        seed = 2
        while len(store.load("latency").chunks) < args.chunks:  # upload batches until the target is reached
            missing = args.chunks - len(store.load("latency").chunks)
            batch = Path(tmp) / f"batch-{seed}"
            batch.mkdir()
            extra = write_documents(batch, min(missing + 50, 9000), seed=seed, chunks_per_document=20)
            store.ingest("latency", [(f, f.name) for f in extra])
            seed += 1
        generation = store.load("latency")
        rng = random.Random(3)
        questions = [
            f"When was the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} of {rng.choice(PLACES)} {rng.choice(VERBS)}?"
            for _ in range(args.queries)
        ]
        latency = {}
        for mode in retrieval.MODES:
            retrieval.search("latency", questions[0], k=5, mode=mode)  # warm
            times = []
            for question in questions:
                started = time.perf_counter()
                retrieval.search("latency", question, k=5, mode=mode)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            latency[mode] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            }
        index_only = index_search_comparison(generation.embeddings, embedder.embed(questions))

    result = {
        "ingest_chunks": len(texts),
        "ingest_chunks_per_second": round(project_rate, 1),
        "bare_encode_chunks_per_second": round(bare_rate, 1),
        "ingest_vs_bare_encode": round(project_rate / bare_rate, 3),
        "latency_chunks": len(generation.chunks),
        "index": generation.index_kind,
        "latency": latency,
        "index_search": index_only,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"ingest of {len(texts)} chunks: {project_rate:.1f} chunks/s vs bare encode {bare_rate:.1f} chunks/s "
            f"-> {result['ingest_vs_bare_encode']:.3f}x"
        )
        for mode, values in latency.items():
            print(
                f"query at {len(generation.chunks):,} chunks, {mode:6s}: p50 {values['p50_ms']:.1f} ms, p95 {values['p95_ms']:.1f} ms"
            )
        exact, hnsw = index_only["exact_ms"], index_only["hnsw_ms"]
        print(
            f"FAISS search alone, same vectors: exact {exact:.2f} ms, HNSW {hnsw:.2f} ms ({exact / hnsw:.1f}x), "
            f"HNSW recall@5 vs exact {index_only['hnsw_recall@5']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
