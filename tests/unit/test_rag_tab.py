"""RAG tab handlers as plain Python."""

from __future__ import annotations

import pytest

from playground import rag as tab
from tests.helpers import SAMPLING_DEFAULTS as DEFAULTS
from tests.rag_corpus import bad_files, write_corpus, write_questions
from tests.refusals import REFUSED


def test_collection_ingest_ask_evaluate(use_tiny, tmp_path, data_dir):
    update = tab.create_collection("notes", 200, 40)
    assert update["value"] == "notes"
    files = [str(f) for f in write_corpus(tmp_path / "c")]
    bad = bad_files(tmp_path / "bad")
    report, docs, summary = tab.ingest_files(
        "notes", files + [str(tmp_path / "bad" / "corrupt.pdf"), str(tmp_path / "bad" / "program.exe")]
    )
    assert report.count("✅") == 5 and report.count("❌") == 2 and "not a readable PDF" in report and len(docs) == 5
    assert "5 documents" in summary
    report, _, _ = tab.ingest_files("notes", files[:1])
    assert "already in the collection" in report
    frame, grounded, plain, notice, passages, capsule = list(
        tab.ask("notes", "Who planted the orchard?", "hybrid", 3, None, **{**DEFAULTS, "max_new_tokens": 4})
    )[-1]
    assert list(frame["source"])[0] == "orchard.md" and "id='passage-1'" in passages and "passages fit" in notice
    _the_answer_replays_from_its_capsule(capsule)
    table, details, note = tab.evaluate_questions("notes", str(write_questions(tmp_path / "q.jsonl")), 5)
    assert list(table["mode"]) == ["dense", "bm25", "hybrid"] and len(details) == 12 and "12 questions" in note
    doc_id = docs.iloc[0]["id"]
    message, docs_after, _ = tab.remove_document("notes", doc_id)
    assert "Removed" in message and len(docs_after) == 4
    assert bad  # (bad files created above)


def _the_answer_replays_from_its_capsule(capsule: dict) -> None:
    """Issue 43: the answer shown (decoded beside the answer without retrieval, in one batch) replays token
    for token, and its capsule loads back the collection, question, retrieval settings and seed."""
    from pipelines.replay import replay

    assert capsule["kind"] == "rag" and capsule["inputs"]["with_baseline"] is True
    answer = replay.replay(capsule)
    assert answer["match"] is True and answer["replayed"]["chunk_ids"] == capsule["result"]["chunk_ids"]
    collection, question, mode, k, *_, note = tab.load_capsule_file(tab.capsule_files.saved(capsule, "answer"))
    assert (collection["value"], question, mode, k) == ("notes", "Who planted the orchard?", "hybrid", 3)
    assert "press **Ask**" in note


def test_clear_messages_for_bad_input(use_tiny, data_dir):
    with pytest.raises(REFUSED, match="Choose or create"):
        tab.ingest_files(None, ["x"])
    with pytest.raises(REFUSED, match="invalid collection name"):
        tab.create_collection("../../etc", 200, 40)
    tab.create_collection("empty", 200, 40)
    with pytest.raises(REFUSED, match="Type a question"):
        list(tab.ask("empty", "  ", "hybrid", 3, None, **DEFAULTS))
    with pytest.raises(REFUSED, match="files"):
        tab.ingest_files("empty", [])
    with pytest.raises(REFUSED, match="already exists"):
        tab.create_collection("empty", 200, 40)


def test_finished_answer_marks_support_per_sentence():
    from tests.rag_corpus import ORCHARD_MD, RAILWAY_TXT, passages

    hits = passages(RAILWAY_TXT, ORCHARD_MD)
    text = "The locomotive is called Grey Heron. The capital of France is <b>Paris</b>. Planted by Mira Lenz [2]."
    streaming = tab._answer_md(text, hits)
    assert "href='#passage-2'" in streaming and "href='#passage-1'" not in streaming and "&lt;b&gt;" in streaming
    done = tab._answer_md(text, hits, tab.attribution.attribute(text, hits))
    assert "<a class='attributed' href='#passage-1'" in done  # found by the check: the model wrote no [1]
    assert (
        done.count("class='unsupported'") == 1 and "Paris" in done.split("class='unsupported'")[1].split("</span>")[0]
    )
    assert "Sources: [1] doc0.txt, [2] doc1.txt" in done and "1 of 3 statements are not supported" in done
    assert "&lt;b&gt;Paris" in done  # still escaped


def test_without_the_embedder_the_answer_keeps_the_model_citations(monkeypatch):
    from pipelines.engine.model_source import EmbedderUnavailable
    from pipelines.rag import embedder
    from tests.rag_corpus import RAILWAY_TXT, passages

    def missing(texts):
        raise EmbedderUnavailable("the embedder package is missing")

    monkeypatch.setattr(embedder, "embed", missing)
    hits = passages(RAILWAY_TXT)
    from pipelines.rag import attribution

    assert attribution.supports("Grey Heron [1].", hits) is None
    shown = tab._answer_md("Grey Heron [1].", hits, attribution.supports("Grey Heron [1].", hits))
    assert "<a href='#passage-1'>[1]</a>" in shown and "Cites: [1] doc0.txt" in shown


def test_the_prompt_injection_demo_is_retrieved_for_its_question(use_tiny, data_dir):
    """The bundled demo goes into a collection in one click, and the chunk carrying the hidden
    instruction is what a question about the lamp retrieves, so the attack reaches the prompt."""
    tab.create_collection("shop", 200, 40)
    report, docs, _, picked = tab.ingest_injection_demo("shop")
    assert picked["value"] == "shop"
    assert "✅ prompt_injection_demo.md" in report and len(docs) == 1
    *_, passages, _ = list(
        tab.ask(
            "shop",
            "What is the warranty on the Northwind lamp?",
            "hybrid",
            3,
            None,
            **{**DEFAULTS, "max_new_tokens": 2},
        )
    )[-1]
    assert "ignore the question you were asked" in passages


def test_the_prompt_injection_demo_works_on_a_fresh_install(use_tiny, data_dir):
    """Issue 42: with no collection (a fresh install) the demo refused "Choose or create a collection"."""
    report, docs, summary, picked = tab.ingest_injection_demo(None)
    assert "✅ prompt_injection_demo.md" in report and picked["value"] == tab.INJECTION_COLLECTION
    assert tab.INJECTION_COLLECTION in picked["choices"] and "1 documents" in summary
    again, *_ = tab.ingest_injection_demo(None)  # a second press reuses its collection
    assert "already in the collection" in again
