"""Uploads that claim little and cost a lot are refused or bounded, with a clear reason, before the cost is paid."""

from __future__ import annotations

import json
import time

import pytest

from pipelines.labels import preference_data, preferences
from pipelines.rag import evaluate as rag_evaluate
from pipelines.rag import parsing
from pipelines.reasoning import benchmark
from pipelines.store import rows
from pipelines.train import sft_data
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
    from pipelines.engine import chat
    from pipelines.engine.sampling import InvalidParameter

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
    assert rag_evaluate.evaluate("any", [{"question": "q", "source": "s"}], should_stop=lambda: True) is None


# --- row files bounded by what they decode to (issue 35, H1) ---------------------------------------

ROW_BOMBS = {
    # name: (maker, file name, what the refusal says)
    "parquet rows sharing a 1 MB string": (bombs.parquet_shared_string_bomb, "shared.parquet", "decodes to more than"),
    "parquet rows sharing a 3 MB string": (
        lambda path: bombs.parquet_shared_string_bomb(path, string_mb=3),
        "shared3.parquet",
        "decodes to more than",
    ),
    "parquet messages sharing a string": (
        lambda path: bombs.parquet_shared_messages_bomb(path, rows=2_000),
        "messages.parquet",
        "decodes to more than",
    ),
    "a 48 MB JSON list of {}": (bombs.json_list_of_empty_objects, "empty.json", "more than 100,000 rows"),
    "JSON Lines of 250k lists a row": (bombs.jsonl_of_many_lists, "lists.jsonl", "decodes to more than"),
    "a CSV header of 2 M columns": (bombs.csv_wide_header, "wide.csv", "over 1,000,000 characters"),
    "a CSV header of 5,000 columns": (
        lambda path: bombs.csv_wide_header(path, 5_000),
        "wide5k.csv",
        "5,000 columns; the limit is 1,000",
    ),
}


# the slowest bomb to decode (~37 s on two cores) runs with the heavy suites; the system test reads it too
SLOW_BOMBS = {"JSON Lines of 250k lists a row"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.heavy) if n in SLOW_BOMBS else n for n in ROW_BOMBS]
)
def test_row_files_are_refused_by_what_they_decode_to(tmp_path, name):
    """The 1,246-byte Parquet file passed the metadata checks and took the app +949 MB; the JSON list +2.2 GB."""
    make, file_name, reason = ROW_BOMBS[name]
    bomb = make(tmp_path / file_name)
    readers = {
        "rows": lambda: list(rows.read_rows(bomb)),
        "fine-tune (/check_dataset)": lambda: sft_data.load_file(bomb),
    }
    if bomb.suffix in (".parquet", ".json", ".jsonl"):
        readers["preferences"] = lambda: preference_data.read_pairs(bomb)
    refusals = {
        "rows": rows.RowsError,
        "fine-tune (/check_dataset)": sft_data.DataError,
        "preferences": preferences.PreferenceError,
    }
    for reader, read in readers.items():
        started = time.monotonic()
        with pytest.raises(refusals[reader]) as refused:
            read()
        assert "\n" not in str(refused.value)  # one line
        if reader == "rows":
            assert reason in str(refused.value)
        assert time.monotonic() - started < 30, reader


def test_every_row_bomb_stays_under_500_mb_in_a_fresh_process(tmp_path):
    """Peak memory of reading each bomb, measured in its own interpreter (the import of pyarrow counted in the baseline)."""
    import subprocess
    import sys

    paths = []
    for make, file_name, _ in ROW_BOMBS.values():
        paths.append(str(make(tmp_path / file_name)))
    script = (
        "import resource, sys, pyarrow.parquet, ijson\n"
        "from pipelines.store import rows\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        sum(1 for _ in rows.read_rows(path))\n"
        "    except rows.RowsError:\n"
        "        pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) < 500, f"+{done.stdout.strip()} MB"


def test_legitimate_row_files_still_read_whole(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # a conversational Parquet file in several row groups, with more distinct text than one dictionary page holds
    conversations = [
        [{"role": "user", "content": f"question {i} " + "x" * 300}, {"role": "assistant", "content": f"answer {i}"}]
        for i in range(6_000)
    ]
    table = pa.table({"messages": conversations})
    with pq.ParquetWriter(str(tmp_path / "m.parquet"), table.schema) as writer:
        for start in range(0, 6_000, 2_000):
            writer.write_table(table.slice(start, 2_000))
    data = sft_data.load_file(tmp_path / "m.parquet")
    assert data.usable == 6_000 and data.conversations[5_999][1].content == "answer 5999"

    # CSV: a quoted cell over several lines, a blank line, a short row
    (tmp_path / "q.csv").write_text('prompt,response\n"line one\nline two",fine\n\nalone,\n', encoding="utf-8")
    got = [record for _, record, _ in rows.read_rows(tmp_path / "q.csv")]
    assert got == [{"prompt": "line one\nline two", "response": "fine"}, {"prompt": "alone", "response": None}]

    # a JSON list, streamed: a bad element is one bad row, the others are read
    items = [{"prompt": "a", "response": "b"}, json.loads(bombs.deep_json(100)), {"prompt": "c", "response": "d"}]
    (tmp_path / "l.json").write_text(json.dumps(items))
    read = list(rows.read_rows(tmp_path / "l.json"))
    assert [(n, error) for n, _, error in read] == [(1, None), (2, "nested deeper than 64 levels"), (3, None)]
    assert read[2][1] == {"prompt": "c", "response": "d"}

    # a JSON Lines row with a raw U+2028 inside a string is one row (splitlines() cut it in two)
    (tmp_path / "u.jsonl").write_text(json.dumps({"prompt": "a\u2028b"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [record for _, record, _ in rows.read_rows(tmp_path / "u.jsonl")] == [{"prompt": "a\u2028b"}]


def test_one_long_or_wide_row_is_one_bad_row(tmp_path):
    limits = rows.RowLimits(max_row_chars=1_000, max_columns=10)
    long_line = json.dumps({"prompt": "x" * 5_000})
    wide = json.dumps({f"k{i}": i for i in range(20)})
    (tmp_path / "r.jsonl").write_text("\n".join(['{"prompt": "ok"}', long_line, wide, '{"prompt": "ok"}']) + "\n")
    assert [error for _, _, error in rows.read_rows(tmp_path / "r.jsonl", limits)] == [
        None,
        "is 5,014 characters long; the limit is 1,000",
        "has 20 keys in one object; the limit is 10",
        None,
    ]
    (tmp_path / "r.json").write_text(json.dumps([{"prompt": "ok"}, {"prompt": "x" * 5_000}, {"prompt": "ok"}]))
    assert [error for _, _, error in rows.read_rows(tmp_path / "r.json", limits)] == [
        None,
        "is over 1,000 characters long",
        None,
    ]
    (tmp_path / "bad.json").write_text('[{"prompt": "ok"}, {"prompt": ')
    with pytest.raises(rows.RowsError, match="not valid JSON"):
        list(rows.read_rows(tmp_path / "bad.json"))
    (tmp_path / "latin.jsonl").write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(rows.RowsError, match="not UTF-8"):
        list(rows.read_rows(tmp_path / "latin.jsonl"))
