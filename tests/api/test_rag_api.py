"""RAG through gradio_client: create a collection, upload files, ask, evaluate -- as a script would."""

from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file

pytestmark = pytest.mark.api


def test_collection_upload_ask_and_evaluate_over_the_api(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    notes = tmp_path / "harbour.md"
    notes.write_text("# Harbour\n\nThe Corran lighthouse was repainted red in 1987 by volunteers.\n", encoding="utf-8")
    orchard = tmp_path / "orchard.txt"
    orchard.write_text("The Fallow orchard grows forty kinds of pear, picked every September.\n", encoding="utf-8")
    junk = tmp_path / "image.bin"
    junk.write_bytes(bytes(range(256)) * 8)

    created = client.predict(name="api-docs", chunk_size=64, overlap=8, api_name="/rag_create")
    assert created["value"] == "api-docs"  # a dropdown update: the new collection, selected
    report, docs, _summary = client.predict(
        name="api-docs",
        files=[handle_file(str(notes)), handle_file(str(orchard)), handle_file(str(junk))],
        api_name="/rag_ingest",
    )
    assert (
        "✅ harbour.md" in report and "✅ orchard.txt" in report and "❌" in report
    )  # the bad file is named, the rest go in
    assert sorted(row[1] for row in docs["data"]) == ["harbour.md", "orchard.txt"]
    contacts = tmp_path / "contacts.txt"
    contacts.write_text("The harbour master is Mary Johnson, mary.johnson@example.com, (415) 555-2671.\n")
    policy, kept = client.predict(name="api-docs", refuse=True, api_name="/rag_policy")
    assert "now refuses documents that hold personal data" in policy and kept is True
    assert client.predict(name=None, refuse=True, api_name="/rag_policy") == (
        "⚠️ Choose or create a collection first: the policy belongs to a collection.",
        False,
    )
    report, docs, _summary = client.predict(name="api-docs", files=[handle_file(str(contacts))], api_name="/rag_ingest")
    assert "❌ contacts.txt: contains personal data: 1 e-mail address" in report and "mary.johnson" not in report
    client.predict(name="api-docs", refuse=False, api_name="/rag_policy")
    report, docs, _summary = client.predict(name="api-docs", files=[handle_file(str(contacts))], api_name="/rag_ingest")
    assert "✅ contacts.txt" in report and "⚠️ contacts.txt holds personal data" in report and "555-2671" not in report
    assert len(docs["data"]) == 3

    hits, grounded, plain, notice, passages = client.predict(
        name="api-docs",
        question="When was the lighthouse repainted?",
        mode="hybrid",
        k=2,
        temperature=0,
        max_new_tokens=4,
        api_name="/rag_ask",
    )
    assert hits["data"][0][2] == "harbour.md" and "1987" in passages
    assert isinstance(grounded, str) and isinstance(plain, str) and "passages" in notice

    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "What fruit grows in Fallow?", "source": "orchard.txt"}) + "\n")
    table, _details, note = client.predict(name="api-docs", file=handle_file(str(questions)), k=1, api_name="/rag_eval")
    assert [row[0] for row in table["data"]] == ["dense", "bm25", "hybrid"] and note.startswith("1 questions")
    assert all(row[1] == 1.0 for row in table["data"])

    with pytest.raises(Exception, match="Type a question"):
        client.predict(name="api-docs", question="  ", mode="dense", k=2, api_name="/rag_ask")
