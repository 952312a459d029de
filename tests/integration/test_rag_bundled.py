"""The bundled model answers from a retrieved passage, where it cannot from memory."""

from __future__ import annotations

import pytest

from pipelines.engine.sampling import SamplingParams
from pipelines.rag import answer, retrieval, store
from tests.rag_corpus import write_corpus

pytestmark = pytest.mark.integration


def test_grounded_answer_uses_the_document(real_handle, tmp_path, data_dir):
    store.create("facts")
    store.ingest("facts", [(f, f.name) for f in write_corpus(tmp_path / "c")])
    question = "What is the steam locomotive called?"
    hits = retrieval.search("facts", question, k=3)
    assert hits[0].chunk.source == "railway.txt"
    last = None
    for last in answer.stream_answers(real_handle, question, hits, SamplingParams(temperature=0, max_new_tokens=32)):  # noqa: B007 - a stream drained for its last value
        pass
    grounded, plain, _ = last
    assert "Grey Heron" in grounded.text  # only the document knows this name
    assert "Grey Heron" not in plain.text
