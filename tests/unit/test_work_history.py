"""The work a tab keeps in the browser (playground/history.py): signed by the server, bounded, and
exactly as it comes back through the browser's JSON."""

from __future__ import annotations

import json

from playground import history


def _through_the_browser(stored: list) -> list:
    """What JSON.parse(JSON.stringify(...)) gives back: whole floats as integers, the rest as written."""

    def js(value):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: js(v) for k, v in value.items()}
        if isinstance(value, list):
            return [js(v) for v in value]
        return value

    return js(json.loads(json.dumps(stored)))


def test_an_entry_survives_the_round_trip_and_the_newest_comes_first(data_dir):
    stored = history.pushed([], "first", history.bounded({"p": 1.0, "n": float("nan"), "big": 2**60}, shed=()))
    stored = history.pushed(_through_the_browser(stored), "second", {"x": [0.5, -0.0]})
    back = _through_the_browser(stored)
    assert [e["title"] for e in history.entries(back)] == ["second", "first"]
    assert history.find(back, back[1]["id"]) == {"p": 1, "n": None, "big": str(2**60)}
    assert [label for label, _ in history.choices(back)][0].endswith("· second")


def test_entries_the_server_did_not_write_are_ignored(data_dir):
    stored = history.pushed([], "mine", {"text": "hello"})
    forged = json.loads(json.dumps(stored))
    forged[0]["data"]["text"] = "<script>alert(1)</script>"
    unsigned = {"id": "x", "title": "t", "data": {"text": "hi"}}
    assert history.entries(forged) == [] and history.entries([unsigned]) == []
    assert history.entries("not a list") == [] and history.newest([{"id": 1}]) is None


def test_bounded_in_count_and_size(data_dir):
    stored: list = []
    for i in range(history.LIMIT + 5):
        stored = history.pushed(stored, f"n{i}", {"i": i})
    assert len(stored) == history.LIMIT and stored[0]["data"] == {"i": history.LIMIT + 4}
    huge = {"text": "keep", "tree": "x" * history.MAX_ENTRY_BYTES}
    assert history.bounded(huge, shed=("tree",)) == {"text": "keep"}
    assert history.bounded({"text": "x" * history.MAX_ENTRY_BYTES}, shed=()) is None
    assert history.pushed(stored, "too big", None) == history.entries(stored)


def test_work_that_grew_replaces_its_entry(data_dir):
    stored = history.pushed([], "chat", {"messages": [1]})
    stored = history.pushed(stored, "chat", {"messages": [1, 2]}, replaces=lambda old: old["messages"] == [1])
    assert [e["data"] for e in history.entries(stored)] == [{"messages": [1, 2]}]
