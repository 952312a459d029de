"""Grounded prompts, fitting to the window, citations, and the side-by-side answer."""

from __future__ import annotations

import json

import pytest

from pipelines.engine import models
from pipelines.engine.sampling import SamplingParams
from pipelines.rag import answer, retrieval, store
from tests.helpers import build_tiny_model
from tests.rag_corpus import write_corpus, write_questions


@pytest.fixture
def collection(tmp_path, data_dir):
    store.create("docs")
    store.ingest("docs", [(f, f.name) for f in write_corpus(tmp_path / "corpus")])
    return "docs"


def test_prompt_numbers_passages_best_last_with_the_grounding_instruction(collection, tiny_handle):
    hits = retrieval.search(collection, "Who planted the orchard?", k=3)
    prompt = answer.grounded_prompt(tiny_handle, "Who planted the orchard?", hits, 64)
    user = prompt.messages[-1].content
    assert (
        "only the numbered context passages" in prompt.messages[0].content
        and "do not say" in prompt.messages[0].content
    )
    assert user.index("[3]") < user.index("[2]") < user.index("[1]") < user.index("Question:")
    assert f"[1] ({hits[0].chunk.source})" in user and prompt.notice == "" and prompt.hits == hits
    lighthouse = retrieval.search(collection, "Who was the last keeper of the lighthouse?", k=1)
    assert "page 2" in answer.grounded_prompt(tiny_handle, "q", lighthouse, 16).messages[-1].content


def test_passages_are_dropped_or_shortened_to_fit_and_the_user_is_told(collection, tokenizer):
    small = models.wrap(build_tiny_model(tokenizer, max_positions=256), tokenizer, name="tiny-256")
    hits = retrieval.search(collection, "Tell me about the lighthouse keeper", k=8)
    prompt = answer.grounded_prompt(small, "Tell me about the lighthouse keeper", hits, 64)
    assert len(prompt.ids) <= 256 - 64 and len(prompt.hits) < len(hits)
    assert "passages fit" in prompt.notice
    assert prompt.hits == hits[: len(prompt.hits)]  # the lowest-ranked go first


def test_a_passage_of_one_unbroken_string_is_cut_to_its_token_budget(tmp_path, data_dir, tokenizer):
    """Issue 35, L3: a chunk of random letters is 254 of the embedder's word pieces but ~1,100 model tokens;
    five made a 5,700-token prompt that cost the app +1.4 to +3.2 GB to prefill."""
    import random
    import string

    rng = random.Random(0)
    wall = tmp_path / "wall.txt"
    wall.write_text("Intro. " + "".join(rng.choice(string.ascii_letters) for _ in range(20_000)) + " end.\n")
    prose = tmp_path / "prose.md"
    prose.write_text("# Orchard\n\n" + "The orchard has forty apple trees and a stone wall. " * 60)
    store.create("walls")
    store.ingest("walls", [(wall, wall.name), (prose, prose.name)])
    wide = models.wrap(build_tiny_model(tokenizer, max_positions=8192), tokenizer, name="tiny-8k")
    hits = retrieval.search("walls", "What is in the wall?", k=5)
    prompt = answer.grounded_prompt(wide, "What is in the wall?", hits, 32)
    cut = [h for h in hits if h.chunk.source == "wall.txt" and len(h.chunk.text) > 1_000]
    assert cut and "cut to 384 tokens" in prompt.notice
    per_passage = len(prompt.ids) / len(prompt.hits)
    assert len(prompt.hits) == len(hits) and per_passage < answer.MAX_PASSAGE_TOKENS + 40
    prose_hits = retrieval.search("walls", "How many apple trees?", k=2, mode="bm25")
    assert all(h.chunk.source == "prose.md" for h in prose_hits)
    assert answer.grounded_prompt(wide, "How many apple trees?", prose_hits, 32).notice == ""  # prose whole


def test_memory_freed_by_a_generation_goes_back_to_the_system(tiny_handle, monkeypatch):
    """Issue 35, L3: glibc kept a long prompt's freed activations resident (+0.5 to +1.1 GB per question)."""
    from pipelines.engine import generation, hardware, scheduler

    trims = []
    monkeypatch.setattr(
        hardware, "_libc", lambda: type("L", (), {"malloc_trim": lambda self, pad: trims.append(pad)})()
    )
    list(generation.stream_batch(tiny_handle, [[1, 2, 3]], [SamplingParams(temperature=0, max_new_tokens=3)]))
    batcher = scheduler.for_handle(tiny_handle)
    if batcher is not None:  # the scheduler's thread trims once its batch has drained
        for _ in range(200):
            if trims:
                break
            import time

            time.sleep(0.01)
    assert trims == [0] or trims[:1] == [0]


def test_grounded_and_plain_answers_come_from_one_batch(collection, tiny_handle):
    hits = retrieval.search(collection, "What is the steam locomotive called?", k=2)
    last = None
    for last in answer.stream_answers(  # noqa: B007 - a stream drained for its last value
        tiny_handle, "What is the steam locomotive called?", hits, SamplingParams(temperature=0, max_new_tokens=6)
    ):
        pass
    grounded, plain, prompt = last
    assert grounded.done and plain.done and grounded.prompt_ids != plain.prompt_ids
    assert (
        plain.prompt_ids
        == answer.chat.build_prompt(tiny_handle, [answer.Message("user", "What is the steam locomotive called?")]).ids
    )


def test_rag_cli_contracts(use_tiny, capsys, tmp_path, data_dir):
    from pipelines.cli import main

    files = write_corpus(tmp_path / "c")
    assert (
        main(["rag", "ingest", "--collection", "cli", *map(str, files), str(tmp_path / "missing.pdf"), "--json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert sorted(i["file"] for i in doc["ingested"]) == sorted(f.name for f in files)
    assert doc["errors"] == [{"file": "missing.pdf", "error": "no such file"}]
    bad = tmp_path / "bad.exe"
    bad.write_bytes(b"MZ")
    assert main(["rag", "ingest", "--collection", "cli", str(bad), "--json"]) == 1  # nothing ingested
    doc = json.loads(capsys.readouterr().out)
    assert doc["ingested"] == [] and "unsupported" in doc["errors"][0]["error"]

    assert (
        main(
            [
                "rag",
                "query",
                "--collection",
                "cli",
                "--question",
                "Who planted the orchard?",
                "--k",
                "2",
                "--no-generate",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["answer"] is None and doc["citations"] == [] and len(doc["chunks"]) == 2
    assert set(doc["chunks"][0]) >= {"text", "source", "page", "score"} and doc["chunks"][0]["source"] == "orchard.md"
    assert (
        main(
            [
                "rag",
                "query",
                "--collection",
                "cli",
                "--question",
                "Who planted the orchard?",
                "--max-new-tokens",
                "4",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc["answer"], str) and isinstance(doc["citations"], list) and isinstance(doc["sources"], list)
    assert [s["sentence"] for s in doc["support"]] == [doc["answer"][s["start"] : s["end"]] for s in doc["support"]]
    question = ["rag", "query", "--collection", "cli", "--question", "Who planted the orchard?", "--k", "2"]
    assert main([*question, "--max-new-tokens", "4"]) == 0  # the same report, as lines
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[1] ") and "orchard.md" in lines[0] and any(line.startswith("[2] ") for line in lines)
    assert all(
        set(s) >= {"passages", "supported", "word_support", "similarity", "unsupported_words"} for s in doc["support"]
    )

    assert (
        main(
            [
                "rag",
                "eval",
                "--collection",
                "cli",
                "--questions",
                str(write_questions(tmp_path / "q.jsonl")),
                "--k",
                "3",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= {"dense", "bm25", "hybrid"} and set(doc["dense"]) == {"recall@3", "mrr"}

    assert main(["rag", "query", "--collection", "nope", "--question", "x", "--json"]) == 2
    assert "no collection named" in capsys.readouterr().err
