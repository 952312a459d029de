"""Instruction datasets: formats, row-level problems, consent, conversion."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines.engine.chat import Message
from pipelines.train import sft_data
from tests.helpers import ROOT


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_prompt_response_jsonl(tmp_path):
    data = sft_data.load_file(
        write(tmp_path / "d.jsonl", '{"prompt": "Hi", "response": "Hello"}\n\n{"prompt": "A", "response": "B"}\n')
    )
    assert data.format == "prompt-response" and data.usable == 2 and not data.problems
    assert data.conversations[0] == [Message("user", "Hi"), Message("assistant", "Hello")]
    assert data.rows == [1, 3]  # blank lines keep numbering honest


def test_alpaca_csv_with_optional_input(tmp_path):
    frame = pd.DataFrame(
        {"instruction": ["Translate", "Summarise"], "input": ["chat", ""], "output": ["chat (fr)", "short"]}
    )
    frame.to_csv(tmp_path / "a.csv", index=False)
    data = sft_data.load_file(tmp_path / "a.csv")
    assert data.format == "alpaca" and data.usable == 2
    assert data.conversations[0][0].content == "Translate\n\nchat" and data.conversations[1][0].content == "Summarise"


def test_messages_parquet_and_json_cells(tmp_path):
    conversation = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
    ]
    pd.DataFrame({"messages": [conversation, conversation]}).to_parquet(tmp_path / "m.parquet")
    data = sft_data.load_file(tmp_path / "m.parquet")
    assert data.format == "messages" and data.usable == 2 and data.conversations[0][0] == Message("system", "S")
    pd.DataFrame({"messages": [json.dumps(conversation)]}).to_csv(tmp_path / "m.csv", index=False)
    assert sft_data.load_file(tmp_path / "m.csv").usable == 1


def test_bad_rows_are_reported_by_number_and_kept_out(tmp_path):
    lines = [
        '{"prompt": "ok", "response": "fine"}',
        '{"prompt": "no answer"}',
        "{not json",
        '{"prompt": 5, "response": "x"}',
        json.dumps({"prompt": "long", "response": "y" * (sft_data.MAX_CHARS_PER_ROW + 1)}),
        '{"prompt": "ok2", "response": "fine2"}',
    ]
    data = sft_data.load_file(write(tmp_path / "d.jsonl", "\n".join(lines)))
    problems = {p.row: p for p in data.problems}
    assert set(problems) == {2, 3, 4, 5} and data.usable == 2
    assert problems[2].column == "response" and "missing" in problems[2].message
    assert "not valid JSON" in problems[3].message
    assert problems[4].column == "prompt" and "must be text" in problems[4].message
    assert "characters long" in problems[5].message
    with pytest.raises(sft_data.DataError, match="4 rows have problems.*row 2"):
        sft_data.accept(data, data.problems, skip_bad_rows=False)
    assert len(sft_data.accept(data, data.problems, skip_bad_rows=True)) == 2


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("empty.jsonl", b"", "is empty"),
        ("data.txt", b"hello", "unsupported file type"),
        ("bin.jsonl", b"\xff\xfe\x00\x01garbage", "not UTF-8"),
        ("fields.jsonl", b'{"foo": 1, "bar": 2}\n', "cannot tell the format"),
        ("noheader.csv", b"", "is empty"),
        ("bad.parquet", b"PAR1 definitely not parquet", "not a readable Parquet"),
        ("onlybad.jsonl", b"{oops\n{nope\n", "no readable rows"),
    ],
)
def test_unusable_files_fail_with_a_clear_reason(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(sft_data.DataError, match=needle):
        sft_data.load_file(path)


def test_each_assistant_turn_becomes_one_example():
    conversation = [Message("user", "a"), Message("assistant", "b"), Message("user", "c"), Message("assistant", "d")]
    examples = sft_data.to_examples([conversation])
    assert [e["completion"][0]["content"] for e in examples] == ["b", "d"]
    assert [m["content"] for m in examples[1]["prompt"]] == ["a", "b", "c"]


def test_split_is_seeded_and_disjoint():
    items = list(range(50))
    train, evaluation = sft_data.split(items, 0.2, seed=1)
    assert sorted(train + evaluation) == items and len(evaluation) == 10
    assert sft_data.split(items, 0.2, seed=1) == (train, evaluation)
    assert sft_data.split(items, 0.2, seed=2) != (train, evaluation)


def test_over_long_rows_in_tokens_are_flagged(tmp_path, tokenizer):
    data = sft_data.load_file(
        write(
            tmp_path / "d.jsonl",
            '{"prompt": "short", "response": "ok"}\n' + json.dumps({"prompt": "word " * 200, "response": "x"}) + "\n",
        )
    )
    problems = sft_data.check_lengths(data, tokenizer, max_length=64)
    assert [p.row for p in problems] == [2] and "tokens" in problems[0].message


def test_bundled_sample_is_large_clean_and_consistent():
    data = sft_data.load_file(ROOT / "assets" / "datasets" / "concise_tutor.jsonl")
    assert data.usable >= 100 and not data.problems
    responses = [c[-1].content for c in data.conversations]
    assert all(r.startswith("In short: ") and "\nWhy it matters: " in r for r in responses)
    assert len({c[0].content for c in data.conversations}) == data.usable  # no duplicate prompts
