"""ReAct's mechanics: a step's text parsed into thought, tool and argument; the tools run for real
(the sandbox, a RAG collection) and say plainly what went wrong; the loop ends and says why."""

from __future__ import annotations

import pytest

from pipelines.errors import InvalidParameter
from pipelines.rag import store
from pipelines.reasoning import react


def test_a_step_is_parsed_into_thought_tool_and_argument():
    assert react.parse(" She buys 7 packs.\nAction: calculate[7 * 12 - 15]\n") == (
        "She buys 7 packs.",
        "calculate",
        "7 * 12 - 15",
    )
    assert react.parse("I think the answer is 4.") == ("I think the answer is 4.", None, None)
    assert react.parse("Done.\nAction: Finish[69]")[1:] == ("finish", "69")


def test_calculate_runs_in_the_sandbox():
    assert react.act("calculate", "14 * 27 - 38", None) == ("340", True)
    observation, ok = react.act("calculate", "1 / 0", None)
    assert not ok and observation.startswith("error:") and "ZeroDivisionError" in observation
    assert react.act("calculate", "1" * 400, None)[1] is False
    assert react.act("browse", "x", None) == (
        "there is no tool 'browse'; the tools are calculate, search, finish",
        False,
    )


def test_search_reads_the_best_passage_of_a_collection(data_dir, tmp_path):
    assert react.act("search", "lamp warranty", None)[1] is False  # no collection: said, not raised
    doc = tmp_path / "lamp.md"
    doc.write_text("# Lamp\n\nThe Northwind lamp comes with a two-year warranty.\n", encoding="utf-8")
    store.create("docs")
    store.ingest("docs", [(doc, doc.name)])
    observation, ok = react.act("search", "Northwind lamp warranty", "docs")
    assert ok and "two-year warranty" in observation


def test_the_loop_ends_and_says_why(tiny_handle):
    rows = list(react.run(tiny_handle, "What is 2 + 2?", react.ReActSpec(max_steps=2, max_new_tokens=8)))
    last = rows[-1]
    assert 1 <= len(rows) <= 3 and last["answer"] is None  # a random model never writes finish[...]
    assert last.get("gave_up") or last["tool"] is None or not last["ok"]
    with pytest.raises(InvalidParameter, match="question: is empty"):
        list(react.run(tiny_handle, "  "))
