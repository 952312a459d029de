"""Preferences tab handlers (and Chat's feedback actions) as plain Python."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pipelines.labels import preference_data, preferences
from pipelines.store import db
from playground import chat as chat_tab
from playground import dataset as dataset_tab
from playground import label as tab
from tests.helpers import SAMPLING_DEFAULTS as DEFAULTS
from tests.refusals import REFUSED


@pytest.fixture(autouse=True)
def fresh_db(data_dir):
    db.dispose_all()
    yield
    db.dispose_all()


def last(gen):
    return list(gen)[-1]


def generate(mode=tab.MODES[0], prompt="Say something nice.", n=2, **slots):
    return last(tab.new_item(mode, prompt, None, n, "alice", max_new_tokens=6, **slots))


def test_new_item_generates_in_one_batch_hidden_and_shuffled(use_tiny):
    out = generate(
        n=3, adapter_a=None, temperature_a=0.0, adapter_b=None, temperature_b=1.0, seed_b=5, temperature_c=1.0, seed_c=6
    )
    item_id, prompt_md, *boxes = out[:6]
    vote_row, *buttons, ranking, rank_button, message, progress = out[6:]
    assert len(buttons) == 4 and all(b["interactive"] for b in buttons)
    item = preferences.get_item(item_id)
    assert len(item.responses) == 3 and "Say something nice." in prompt_md
    assert [b["value"] for b in boxes[:3]] == [r.text for r in item.responses]
    assert boxes[3]["visible"] is False and ranking["visible"] and rank_button["visible"] and not vote_row["visible"]
    assert {r.sampling["temperature"] for r in item.responses} == {0.0, 1.0}
    assert "hidden until you vote" in message and progress == ""


def test_vote_locks_and_reveals_sources(use_tiny):
    item_id = generate()[0]
    *controls, revealed, progress = tab.vote(item_id, "A", "clearer", "alice")
    assert all(c["interactive"] is False for c in controls[1:])
    assert "You voted: A better" in revealed and "`base`" in revealed and "locked" in revealed
    assert progress == {"__type__": "update"}, "no drive: the progress line is left as it is"
    assert preferences.get_item(item_id).labels[0].rationale == "clearer"
    *_, again = tab.vote(item_id, "A", "", "alice")  # a double click changes nothing
    assert len(preferences.get_item(item_id).labels) == 1
    with pytest.raises(REFUSED, match="already voted"):
        tab.vote(item_id, "B", "", "alice")


def test_ranking_vote(use_tiny):
    item_id = generate(n=3)[0]
    *_, revealed, _ = tab.vote_ranking(item_id, "C > A = B", "", "alice")
    assert "C > A = B" in revealed
    with pytest.raises(REFUSED, match="letters"):
        tab.vote_ranking(generate(n=3)[0], "A > E", "", "alice")


def test_identity_and_input_errors(use_tiny):
    with pytest.raises(REFUSED, match="your name"):
        last(tab.new_item(tab.MODES[0], "hi", None, 2, ""))
    with pytest.raises(REFUSED, match="Type a prompt"):
        last(tab.new_item(tab.MODES[0], "  ", None, 2, "alice"))
    with pytest.raises(REFUSED, match="queue is empty"):
        last(tab.new_item(tab.MODES[2], "", None, 2, "alice"))
    with pytest.raises(REFUSED, match="press Next"):
        tab.vote(None, "A", "", "alice")


def test_prompt_sets_and_the_queue(use_tiny, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "First?"}\n{"prompt": "Second?"}\n{"nope": 1}\n')
    message, dropdown = tab.upload_prompt_set(str(path), "demo")
    assert "Added 2" in message and "1 rows skipped" in message and dropdown["value"] == "demo"
    out = last(tab.new_item(tab.MODES[1], "", "demo", 2, "alice", max_new_tokens=4))
    assert preferences.get_item(out[0]).prompt_text in {"First?", "Second?"}
    # an item waiting in the queue (here: imported) is served to an annotator who has not voted on it
    waiting = preferences.create_item(
        [preferences.Message("user", "Queued?")], [preferences.ResponseDraft("x"), preferences.ResponseDraft("y")]
    )
    served = []
    for _ in range(3):  # oldest first: alice's un-voted item, then the queued one
        item_id = last(tab.new_item(tab.MODES[2], "", None, 2, "bob"))[0]
        served.append(item_id)
        tab.vote(item_id, "A", "", "bob")
        if item_id == waiting.id:
            break
    assert served[-1] == waiting.id and len(set(served)) == len(served)


def test_dataset_view_export_import(use_tiny, tmp_path):
    for _ in range(3):
        tab.vote(generate()[0], "A", "", "alice")
    text, annotators, board, forest, wins, pairs, recent = dataset_tab.dataset_view()
    assert "**3** items, **3** labels" in text and list(annotators["labels"]) == [3] and len(recent) == 3
    assert "Krippendorff's α" in text and pairs.empty  # one annotator: no pair to agree
    if len(board):  # base vs base comparisons rank nobody; a leaderboard comes with its interval plot
        assert set(board.columns) >= {"ci_low", "ci_high"} and "forest-row" in forest
    path = dataset_tab.export_labels("jsonl")
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    assert len(rows) == 3 and set(rows[0]) == {"prompt", "chosen", "rejected", *preference_data.PROVENANCE_COLUMNS}
    consensus = [json.loads(line) for line in open(dataset_tab.export_labels("jsonl", "unanimous"), encoding="utf-8")]
    assert len(consensus) == 3 and {r["annotator"] for r in consensus} == {"consensus"}
    with pytest.raises(REFUSED, match="Rows"):
        dataset_tab.export_labels("jsonl", "most")
    assert dataset_tab.export_labels("dataset").endswith(".zip")
    assert "Imported **3** rows" in dataset_tab.import_labels(path)
    with pytest.raises(REFUSED):
        dataset_tab.import_labels(None)
    bad = tmp_path / "x.exe"
    bad.write_bytes(b"MZ")
    with pytest.raises(REFUSED, match="unsupported file type"):
        dataset_tab.import_labels(str(bad))
    item_id = recent.iloc[0]["item"]
    assert "Deleted" in dataset_tab.delete_item(item_id)
    with pytest.raises(REFUSED, match="No item"):
        dataset_tab.delete_item(item_id)


def test_chat_thumbs_and_compare_create_items(use_tiny):
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}]
    chat_tab.feedback(history, "Be nice.", "carol", SimpleNamespace(index=1, liked=True))
    items = preferences.list_items()
    assert len(items) == 1 and items[0].labels[0].choice == "up" and items[0].labels[0].annotator == "carol"
    assert [m.role for m in items[0].prompt] == ["system", "user"]
    chat_tab.send_to_compare(history, "", None, "carol", **{**DEFAULTS, "max_new_tokens": 4})
    queued = preferences.next_unlabelled("dave")
    assert (
        queued is not None and "Hello there!" in [r.text for r in queued.responses] and queued.origin == "chat-compare"
    )
    with pytest.raises(REFUSED, match="assistant reply"):
        chat_tab.feedback(history, "", "carol", SimpleNamespace(index=0, liked=False))


def test_label_drive_mode_serves_assigned_items_and_shows_progress(use_tiny):
    from pipelines.labels import drives

    drives.save("class", drives.DriveSettings(overlap=2))
    made = [
        preferences.create_item(
            [preferences.Message("user", f"Q{i}?")], [preferences.ResponseDraft("x"), preferences.ResponseDraft("y")]
        )
        for i in range(2)
    ]
    drives.add_items("class", [m.id for m in made])
    with pytest.raises(REFUSED, match="Choose a label drive"):
        last(tab.new_item(tab.MODES[3], "", None, 2, "alice"))
    out = last(tab.new_item(tab.MODES[3], "", None, 2, "alice", drive="class"))
    assert out[0] in {m.id for m in made}
    assert "**You:** 0 done of 1 assigned, 1 open" in out[-1] and "0 of 4 labels (0%)" in out[-1]
    *_, progress = tab.vote(out[0], "A", "", "alice")
    assert "**You:** 1 done of 1 assigned · 1 more available to you." in progress and "1 of 4 labels" in progress
    second = last(tab.new_item(tab.MODES[3], "", None, 2, "alice", drive="class"))[0]
    tab.vote(second, "B", "", "alice")
    done = last(tab.new_item(tab.MODES[3], "", None, 2, "alice", drive="class"))  # issue 42, W8: thanks, not an error
    assert done[0] is None and "Done: nothing left for you in class" in done[1] and "2 done of 2" in done[-1]
