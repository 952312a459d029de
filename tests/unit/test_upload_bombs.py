"""Uploads that claim little and cost a lot are refused or bounded, with a clear reason, before the cost is paid."""

from __future__ import annotations

import json
import time

import pytest

from pipelines import preference_data, preferences, rows, sft_data
from pipelines.rag import evaluate as rag_evaluate
from pipelines.rag import parsing
from pipelines.reasoning import benchmark
from tests import bombs


def test_a_docx_whose_media_inflates_is_refused_before_inflating(tmp_path):
    bomb = bombs.docx_bomb(tmp_path / "report.docx", inflated_mb=300)
    assert bomb.stat().st_size < 2_000_000
    started = time.monotonic()
    with pytest.raises(parsing.ParseError, match="inflates"):
        parsing.parse(bomb)
    assert time.monotonic() - started < 5


def test_a_pdf_whose_pages_share_one_huge_stream_stops_at_the_character_budget(tmp_path):
    bomb = bombs.pdf_bomb(tmp_path / "slides.pdf")
    assert bomb.stat().st_size < 20_000
    with pytest.raises(parsing.ParseError, match="more than 3,000,000 characters"):
        parsing.parse(bomb)


def test_parsing_runs_under_a_cpu_limit(tmp_path, monkeypatch):
    bomb = bombs.pdf_bomb(tmp_path / "slow.pdf", pages=40)
    monkeypatch.setattr(parsing, "MAX_DOCUMENT_CHARS", 100_000_000)  # no budget: only the CPU limit stops it
    monkeypatch.setattr(parsing, "PARSE_CPU_SECONDS", 1)
    started = time.monotonic()
    with pytest.raises(parsing.ParseError, match="CPU"):
        parsing.parse(bomb)
    assert time.monotonic() - started < 15


def test_a_parquet_file_is_counted_from_its_metadata_before_any_row_is_read(tmp_path):
    bomb = bombs.parquet_bomb(tmp_path / "rows.parquet")
    assert bomb.stat().st_size < 200_000
    started = time.monotonic()
    with pytest.raises(sft_data.DataError, match="5,000,000 rows; the limit is 100,000"):
        sft_data.load_file(bomb)
    with pytest.raises(preferences.PreferenceError, match="5,000,000 rows"):
        preference_data.read_pairs(bomb)
    assert time.monotonic() - started < 5


def test_deep_json_is_one_bad_row_everywhere(tmp_path):
    """JSON nested 100,000 deep raised 'maximum recursion depth exceeded' and sank the whole file."""
    sft = sft_data.load_file(bombs.deep_jsonl(tmp_path / "sft.jsonl", {"prompt": "Hi", "response": "Hello"}))
    assert sft.usable == 2 and [(p.row, p.message) for p in sft.problems] == [(2, "nested deeper than 64 levels")]
    pairs, errors = preference_data.read_pairs(
        bombs.deep_jsonl(tmp_path / "pairs.jsonl", {"prompt": "Hi", "chosen": "a", "rejected": "b"})
    )
    assert len(pairs) == 2 and errors == [{"line": 2, "error": "nested deeper than 64 levels"}]
    questions, errors = rag_evaluate.load_questions(
        bombs.deep_jsonl(tmp_path / "q.jsonl", {"question": "Why?", "source": "a.md"})
    )
    assert len(questions) == 2 and errors[0]["line"] == 2
    problems, errors = benchmark.load_problems(
        bombs.deep_jsonl(tmp_path / "p.jsonl", {"question": "1+1?", "answer": 2})
    )
    assert len(problems) == 2 and errors[0]["line"] == 2
    prompts, problems = preference_data.read_prompts(bombs.deep_jsonl(tmp_path / "prompts.jsonl", {"prompt": "Hi"}))
    assert len(prompts) == 2 and problems[0].row == 2
    from pipelines import chat
    from pipelines.sampling import InvalidParameter

    with pytest.raises(InvalidParameter, match="nested deeper than 64 levels"):
        chat.import_json(bombs.deep_json())
    with pytest.raises(ValueError, match="nested deeper"):
        rows.loads(json.dumps({"a": [[[[[[[[1]]]]]]]]}), max_depth=5)


def test_retrieval_evaluation_is_capped_in_rows_and_question_length(tmp_path):
    many = tmp_path / "many.jsonl"
    many.write_text(
        "".join(
            json.dumps({"question": f"q{i}?", "source": "a.md"}) + "\n" for i in range(rag_evaluate.MAX_QUESTIONS + 5)
        )
    )
    questions, errors = rag_evaluate.load_questions(many)
    assert questions == [] and "more than 1,000 rows" in errors[0]["error"]
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"question": "why " * 1000, "source": "a.md"}) + "\n")
    assert "over 2,000 characters" in rag_evaluate.load_questions(long)[1][0]["error"]
    with pytest.raises(ValueError, match="at most 1,000 questions"):
        rag_evaluate.evaluate("any", [{"question": "q", "source": "s"}] * 1001)
    with pytest.raises(rag_evaluate.EvaluationStopped):
        rag_evaluate.evaluate("any", [{"question": "q", "source": "s"}], should_stop=lambda: True)
