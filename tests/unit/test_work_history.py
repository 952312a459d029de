"""The work a tab keeps in the browser (playground/history.py): signed by the server, bounded, and
exactly as it comes back through the browser's JSON."""

from __future__ import annotations

import json

import pytest

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


class _Signed:
    """A request as Gradio's sign-in gives it."""

    def __init__(self, username: str | None) -> None:
        self.username = username


def test_a_shared_browser_shows_each_signed_in_person_only_their_own(data_dir):
    with history.owned_by(_Signed("alice")):
        alices = history.pushed([], "alice's", {"text": "mine"})
        assert history.entries(alices) and history.newest(alices) == {"text": "mine"}
    with history.owned_by(_Signed("bob")):
        assert history.entries(alices) == [] and history.newest(alices) is None  # the same browser, not hers
    assert history.entries(alices) == []  # nor anonymous visitors
    anonymous = history.pushed([], "nobody's", {"text": "open"})
    with history.owned_by(_Signed("alice")):
        assert history.entries(anonymous) == []


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, data_dir, monkeypatch):
    from tests import postgres

    with postgres.database_for(request, monkeypatch) as kind:
        yield kind


def test_signed_in_work_is_kept_on_the_server_for_other_devices(database):
    from pipelines.store import work_history

    with history.owned_by(_Signed("alice")):
        first = history.pushed([], "laptop", {"n": 1})
        work_history.save("alice", "chat", first)
        phone = history.pushed([], "phone", {"n": 2})  # made on another device, newer
        both = history.merged(history.entries(phone), history.entries(work_history.load("alice", "chat").entries))
        assert [e["title"] for e in both] == ["phone", "laptop"]
        assert history.merged(both, both) == both  # each entry once
    assert work_history.load("bob", "chat").entries == [] and work_history.load("alice", "rag").entries == []
    big = [{"id": str(i), "data": {"x": "y" * 100_000}} for i in range(12)]
    work_history.save("alice", "chat", big)
    kept = work_history.load("alice", "chat").entries
    assert 0 < len(kept) < 12 and kept[0]["id"] == "0"  # bounded: the oldest went
    overlong = "a" * (work_history.MAX_NAME + 1)  # longer than the key column: kept in the browser only
    work_history.save(overlong, "chat", first)
    assert work_history.load(overlong, "chat").entries == []


def test_clearing_on_one_device_is_not_undone_by_another(database):
    """The phone still holds the laptop's entry in its storage after the laptop cleared the history: its
    next result must not send it back to the server."""
    from pipelines.store import work_history

    with history.owned_by(_Signed("alice")):
        laptop = history.pushed([], "old", {"n": 1})
        work_history.save("alice", "chat", laptop)
        phone = history.with_server_copy("alice", "chat", [])  # the phone loaded it
        work_history.forget("alice", "chat")  # Clear history on the laptop
        assert history.with_server_copy("alice", "chat", phone) == []
        newer = history.pushed(phone, "new", {"n": 2})  # made after the clearing: kept
        assert [e["title"] for e in history.with_server_copy("alice", "chat", newer)] == ["new"]


def test_a_forged_time_in_the_browsers_copy_is_harmless(data_dir):
    stored = history.pushed([], "mine", {"n": 1})
    for forged in (1e300, float("nan"), float("inf"), -5, "soon", 2**70, 10**400, True):
        stored[0]["at"] = forged
        assert history.choices(stored)[0][0].startswith("--:--") and history.newest(stored) == {"n": 1}
