"""RAG: parsing, chunking, the collection store, retrieval and its evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.rag import chunking, embedder, evaluate, parsing, retrieval, store
from tests.rag_corpus import QUESTIONS, bad_files, write_corpus, write_questions


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def collection(corpus, data_dir):
    store.create("docs")
    report = store.ingest("docs", [(f, f.name) for f in corpus])
    assert not report.errors
    return "docs"


def test_formats_keep_pages_and_drop_scripts(corpus):
    by_name = {f.name: parsing.parse(f) for f in corpus}
    assert [s.page for s in by_name["lighthouse.pdf"].sections] == [1, 2]
    volcano = by_name["volcano.html"].sections[0].text
    assert (
        "stratovolcano" in volcano
        and "SECRET_SCRIPT_TEXT" not in volcano
        and "NOSCRIPT_TEXT" not in volcano
        and "color" not in volcano
    )
    assert "Rye loaf | 4.50" in by_name["bakery.docx"].sections[0].text  # tables are text too
    assert "crêpes" in by_name["railway.txt"].sections[0].text  # latin-1 decoded correctly


def test_every_bad_file_has_its_reason(tmp_path):
    for name, fragment in bad_files(tmp_path).items():
        with pytest.raises(parsing.ParseError, match=fragment):
            parsing.parse(tmp_path / name)


def test_oversized_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(parsing, "MAX_FILE_BYTES", 10)
    (tmp_path / "big.txt").write_text("x" * 11)
    with pytest.raises(parsing.ParseError, match="limit"):
        parsing.parse(tmp_path / "big.txt")


LONG_TEXT = " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(120))


def test_chunks_fit_the_embedder_overlap_and_keep_exact_offsets():
    tokenizer = embedder.tokenizer()
    chunks = chunking.chunk_text(LONG_TEXT, 3, tokenizer, size=64, overlap=16)
    assert len(chunks) > 5
    for chunk in chunks:
        assert LONG_TEXT[chunk.start : chunk.end] == chunk.text and chunk.page == 3
        assert len(tokenizer(chunk.text, add_special_tokens=False)["input_ids"]) <= 64
        assert chunk.text.endswith(".")  # ends at a sentence boundary
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end  # overlap carried over
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(LONG_TEXT) if not ch.isspace())


def test_a_sentence_longer_than_a_chunk_is_split_by_tokens():
    text = " ".join(["word"] * 400) + "."
    chunks = chunking.chunk_text(text, None, embedder.tokenizer(), size=100, overlap=10)
    assert len(chunks) >= 4 and all(c.tokens <= 100 for c in chunks)


def test_an_unbroken_string_is_cut_by_characters_too():
    """WordPiece reads a 100 kB word as one [UNK]: it was one 100 kB chunk no question could fit around."""
    text = "Intro sentence. " + "x" * 100_000 + " Outro."
    chunks = chunking.chunk_text(text, None, embedder.tokenizer(), size=200, overlap=40)
    assert len(chunks) >= 100_000 // (200 * chunking.CHARS_PER_TOKEN)
    assert max(len(c.text) for c in chunks) <= 200 * chunking.CHARS_PER_TOKEN
    assert all(text[c.start : c.end] == c.text for c in chunks)


@pytest.mark.parametrize("size, overlap", [(8, 0), (300, 0), (64, 64), (64, -1)])
def test_bad_chunk_settings_are_refused(size, overlap):
    with pytest.raises(ValueError):
        chunking.chunk_text("Some text.", None, embedder.tokenizer(), size=size, overlap=overlap)


def test_ingest_reports_bad_files_and_keeps_going(corpus, tmp_path, data_dir):
    store.create("mixed")
    bad = bad_files(tmp_path / "bad")
    files = [(corpus[0], corpus[0].name)] + [(tmp_path / "bad" / name, name) for name in bad]
    report = store.ingest("mixed", files)
    assert [i["file"] for i in report.ingested] == ["lighthouse.pdf"]
    assert {e["file"] for e in report.errors} == set(bad)
    again = store.ingest("mixed", [(corpus[0], "renamed-copy.pdf")])
    assert again.ingested == [] and again.unchanged == [
        {"file": "renamed-copy.pdf", "chunks": 0}
    ]  # same content: no-op


def test_hostile_names_are_sanitised(corpus, data_dir):
    store.create("names")
    hostile = ["../../etc/passwd.txt", "/abs/path.md", "nul\x00byte.txt", "a" * 300 + ".txt"]
    report = store.ingest("names", [(corpus[4 if i % 2 else 3], name) for i, name in enumerate(hostile)])
    stored = {p.name for p in (data_dir / "rag" / "names" / "documents").iterdir()}
    assert all("/" not in n and "\x00" not in n and len(n) < 140 for n in stored)
    assert all(
        (data_dir / "rag" / "names" / "documents") in p.parents
        for p in (data_dir / "rag" / "names" / "documents").iterdir()
    )
    assert len(report.ingested) + len(report.unchanged) == 4
    for bad in ["../x", "", "a/b", ".hidden"]:
        with pytest.raises(store.CollectionError):
            store.create(bad)


def test_collection_survives_a_restart(collection):
    before = store.load(collection)
    store._cache.clear()  # what a fresh process sees
    after = store.load(collection)
    assert [c.text for c in after.chunks] == [c.text for c in before.chunks]
    assert np.allclose(after.embeddings, before.embeddings)
    assert retrieval.search(collection, "Who planted the orchard?", k=1)[0].chunk.source == "orchard.md"


def test_a_crash_mid_ingest_leaves_the_previous_index_usable(collection, tmp_path, monkeypatch):
    before = store.load(collection)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store.np, "save", crash)  # dies while writing the new generation
    (tmp_path / "new.md").write_text("A brand new document about comets and their tails.")
    with pytest.raises(OSError):
        store.ingest(collection, [(tmp_path / "new.md", "new.md")])
    store._cache.clear()
    after = store.load(collection)
    assert len(after.chunks) == len(before.chunks) and "new.md" not in {d.name for d in after.documents}
    monkeypatch.undo()
    assert store.ingest(collection, [(tmp_path / "new.md", "new.md")]).ingested  # and it recovers


def test_remove_document_and_delete_collection(collection, data_dir):
    doc = next(d for d in store.load(collection).documents if d.name == "orchard.md")
    store.remove_document(collection, doc.id)
    generation = store.load(collection)
    assert "orchard.md" not in {c.source for c in generation.chunks} and len(generation.embeddings) == len(
        generation.chunks
    )
    assert all(h.chunk.source != "orchard.md" for h in retrieval.search(collection, "Who planted the orchard?", k=5))
    with pytest.raises(store.CollectionError):
        store.remove_document(collection, doc.id)
    store.delete(collection)
    assert not (data_dir / "rag" / collection).exists()
    with pytest.raises(store.CollectionError):
        store.load(collection)


def test_embedder_mismatch_is_refused_until_reindexed(collection, data_dir):
    meta_file = data_dir / "rag" / collection / "collection.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "embedder": "some/other-model", "dimension": 768}))
    store._cache.clear()
    with pytest.raises(store.CollectionError, match="re-index"):
        store.load(collection)
    assert store.reindex(collection) > 0
    assert store.load(collection).embeddings.shape[1] == 384


def test_hnsw_above_the_threshold_supports_search_and_removal(corpus, data_dir, monkeypatch):
    monkeypatch.setattr(store, "HNSW_THRESHOLD", 3)
    store.create("big")
    store.ingest("big", [(f, f.name) for f in corpus])
    generation = store.load("big")
    assert generation.index_kind == "hnsw" and "HNSW" in type(generation.index).__name__
    assert (
        retrieval.search("big", "What is the sourdough starter called?", k=1, mode="dense")[0].chunk.source
        == "bakery.docx"
    )
    store.remove_document("big", next(d.id for d in generation.documents if d.name == "bakery.docx"))
    assert all(h.chunk.source != "bakery.docx" for h in retrieval.search("big", "sourdough starter", k=5, mode="dense"))


@pytest.mark.parametrize("mode", retrieval.MODES)
def test_every_mode_finds_the_right_documents(collection, mode):
    found = sum(
        any(h.chunk.source == q["source"] for h in retrieval.search(collection, q["question"], k=3, mode=mode))
        for q in QUESTIONS
    )
    assert found / len(QUESTIONS) >= 0.75


def test_hybrid_is_reciprocal_rank_fusion(collection):
    question = "When did Mount Keria last erupt?"
    dense = [h.chunk.id for h in retrieval.search(collection, question, k=20, mode="dense")]
    sparse = [h.chunk.id for h in retrieval.search(collection, question, k=20, mode="bm25")]
    expected = {}
    for ranking in (dense, sparse):
        for rank, chunk_id in enumerate(ranking, start=1):
            expected[chunk_id] = expected.get(chunk_id, 0) + 1 / (60 + rank)
    hybrid = retrieval.search(collection, question, k=3, mode="hybrid")
    assert [h.chunk.id for h in hybrid] == sorted(expected, key=lambda c: -expected[c])[:3]
    assert hybrid[0].score == pytest.approx(max(expected.values()))


def test_search_input_errors(collection):
    for kwargs in ({"k": 0}, {"k": 99}, {"mode": "magic"}):
        with pytest.raises(ValueError):
            retrieval.search(collection, "question", **kwargs)
    with pytest.raises(ValueError, match="empty"):
        retrieval.search(collection, "   ")
    assert retrieval.search(collection, "the of and", mode="bm25") == []  # only stop words


def test_evaluation_recall_and_mrr(collection, tmp_path):
    rows, errors = evaluate.load_questions(write_questions(tmp_path / "q.jsonl"))
    assert len(rows) == len(QUESTIONS) and not errors
    report = evaluate.evaluate(collection, rows, k=5)
    for mode in retrieval.MODES:
        assert 0.75 <= report[mode]["recall@5"] <= 1 and 0 < report[mode]["mrr"] <= report[mode]["recall@5"]
    # MRR by hand from the per-question ranks
    ranks = [d["dense"] for d in report["details"]]
    assert report["dense"]["mrr"] == pytest.approx(sum(1 / r for r in ranks if r) / len(ranks))
    page_rows = [{"question": QUESTIONS[0]["question"], "source": "lighthouse.pdf", "page": 2}]  # the wrong page
    assert evaluate.evaluate(collection, page_rows, k=1, modes=["dense"])["dense"]["recall@1"] == 0


def test_question_file_errors_by_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"question": "ok?", "source": "a.txt"}\n{bad\n{"question": ""}\n{"question": "x", "source": "a", "page": 0}\n'
    )
    rows, errors = evaluate.load_questions(path)
    assert len(rows) == 1 and [e["line"] for e in errors] == [2, 3, 4]


def test_collection_names_are_listed_without_loading_an_index(data_dir, tmp_path, monkeypatch):
    """The RAG tab lists collections while the app starts: no FAISS or BM25 file is read for that."""
    store.create("alpha")
    note = tmp_path / "note.txt"
    note.write_text("The lighthouse keeper polishes the lens every evening.")
    assert store.ingest("alpha", [(note, "note.txt")]).ingested
    store._cache.clear()  # as in a fresh process
    store.create("beta")
    (store.root() / ".tmp-half-written").mkdir()
    (store.root() / ".tmp-half-written" / "collection.json").write_text("{}")
    (store.root() / "no-meta").mkdir()
    monkeypatch.setattr(store, "_read_generation", lambda *a: pytest.fail("an index was loaded"))
    assert store.collection_names() == ["alpha", "beta"]
    with pytest.raises(pytest.fail.Exception, match="an index was loaded"):
        store.list_collections()  # the full listing with counts does read it: the check above is not vacuous
