"""Label drives: assignment with overlap under concurrency, leases, gold checks, and exports with
provenance and consensus."""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
from collections import Counter

import pytest

from pipelines.engine.chat import Message
from pipelines.labels import drives, preference_data, preference_stats, preferences
from pipelines.labels.preferences import ResponseDraft


@pytest.fixture(autouse=True)
def fresh_db(store_database):
    """Every test here runs on SQLite and on PostgreSQL (tests/conftest.py: store_database)."""
    yield


def make_items(n: int, tag: str = "q") -> list[preferences.ItemView]:
    return [
        preferences.create_item(
            [Message("user", f"{tag} {i}")],
            [ResponseDraft(f"good {i}", source="tuned"), ResponseDraft(f"bad {i}", source="base")],
            rng=random.Random(i),
        )
        for i in range(n)
    ]


def good_letter(item_id: str) -> str:
    item = preferences.get_item(item_id)
    return next(r.letter for r in item.responses if r.text.startswith("good"))


def drive_with(n_items: int, n_gold: int = 0, **settings) -> tuple[list[str], list[str]]:
    drives.save("d", drives.DriveSettings(**settings))
    regular = [i.id for i in make_items(n_items)]
    gold_items = make_items(n_gold, tag="gold")
    drives.add_items("d", regular)
    answers = {i.id: preference_data.parse_answer(good_letter(i.id), 2) for i in gold_items}
    drives.add_items("d", list(answers), answers)
    return regular, list(answers)


def test_overlap_fills_started_items_first_and_stops_at_k():
    regular, _ = drive_with(3, overlap=2)
    first = drives.take("d", "ann")
    assert drives.take("d", "ann") == first, "an open item comes back (a reload takes no new place)"
    assert drives.take("d", "bob") == first, "the next annotator joins the started item"
    preferences.submit_label(first, "ann", "A")
    preferences.submit_label(first, "bob", "B")
    third = drives.take("d", "cat")
    assert third != first and third in regular, "an item with its k labels is not served again"
    with pytest.raises(drives.DriveError, match="already has its 2 labels"):
        preferences.submit_label(first, "cat", "A")  # not even by voting on its id directly
    report = drives.progress("d", "ann")
    assert report["labels"] == 2 and report["labels_needed"] == 6 and report["complete_items"] == 1
    assert report["you"] == {"name": "ann", "done": 1, "assigned": 1, "open": 0, "available": 2}


def test_a_lapsed_lease_frees_the_place_and_its_late_vote_is_refused():
    (only,), _ = drive_with(1, overlap=1, lease_minutes=1)
    assert drives.take("d", "slow", now=1_000.0) == only
    assert drives.take("d", "other", now=1_030.0) is None, "held for its annotator"
    assert drives.take("d", "other", now=1_061.0) == only, "offered again once the hold lapses"
    preferences.submit_label(only, "other", "A")
    with pytest.raises(drives.DriveError, match="press Next"):
        preferences.submit_label(only, "slow", "B")
    assert drives.take("d", "slow") is None, "never served twice to one annotator"


def test_gold_items_reach_every_annotator_once_and_do_not_count_as_progress():
    regular, gold = drive_with(2, n_gold=2, overlap=1, gold_rate=0.5)
    seen = {name: [] for name in ("ann", "bob")}
    for name in seen:
        while (item := drives.take("d", name, rng=random.Random(7))) is not None:
            seen[name].append(item)
            preferences.submit_label(item, name, "A")
    for name, items in seen.items():
        assert set(gold) <= set(items) and len(items) == len(set(items)), name
    assert Counter(i for items in seen.values() for i in items if i in regular) == Counter(regular)
    report = drives.progress("d")
    assert report["items"] == 2 and report["gold_items"] == 2 and report["labels"] == 2 and report["share"] == 1.0


def _label_all(drive: str, names: list[str], served: list, errors: list) -> None:
    def worker(name: str) -> None:
        try:
            while (item := drives.take(drive, name)) is not None:
                served.append((item, name))
                preferences.submit_label(item, name, random.choice("AB"))
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def check_drive_invariants(served: list, overlap: int, n_items: int) -> None:
    assert len(served) == len(set(served)), "an item was served twice to one annotator"
    labels = Counter(label.item_id for item in preferences.all_items() for label in item.labels)
    assert len(labels) == n_items and set(labels.values()) == {overlap}, labels


def test_ten_annotators_at_once_never_push_an_item_past_k():
    drive_with(15, overlap=3)
    served: list = []
    errors: list = []
    _label_all("d", [f"annotator-{n}" for n in range(10)], served, errors)
    assert not errors
    check_drive_invariants(served, 3, 15)


def _process_worker(data_dir: str, names: list[str], queue) -> None:  # noqa: ANN001
    import os

    os.environ["PLAYGROUND_DATA_DIR"] = data_dir
    served: list = []
    errors: list = []
    _label_all("d", names, served, errors)
    queue.put((served, errors))


@pytest.mark.slow
def test_annotators_in_several_processes_share_one_drive(data_dir):
    """Replicas and the CLI are other processes: SQLite's lock, not a Python lock, keeps the count."""
    drive_with(12, overlap=2)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_process_worker, args=(str(data_dir), [f"p{p}-{n}" for n in range(3)], queue))
        for p in range(3)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    served = [pair for found, _ in results for pair in found]
    assert not [error for _, errors in results for error in errors]
    check_drive_invariants([tuple(pair) for pair in served], 2, 12)


def test_queue_mode_leaves_drive_items_to_their_drive():
    (item,), _ = drive_with(1)
    loose = make_items(1, tag="loose")[0]
    assert preferences.next_unlabelled("ann").id == loose.id
    preferences.submit_label(loose.id, "ann", "A")
    assert preferences.next_unlabelled("ann") is None and drives.take("d", "ann") == item


def test_drive_settings_and_names_are_checked():
    with pytest.raises(Exception, match="overlap"):
        drives.DriveSettings(overlap=0)
    with pytest.raises(Exception, match="gold_rate"):
        drives.DriveSettings(gold_rate=0.9)
    with pytest.raises(drives.DriveError, match="name the drive"):
        drives.save("  ")
    with pytest.raises(drives.DriveError, match="no label drive 'nope'"):
        drives.take("nope", "ann")
    with pytest.raises(drives.DriveError, match="who you are"):
        drives.take("nope", " ")
    drive_with(1)
    other = make_items(1, tag="x")[0]
    drives.save("e")
    drives.add_items("e", [other.id])
    with pytest.raises(drives.DriveError, match="already in the drive 'e'"):
        drives.add_items("d", [other.id])
    with pytest.raises(preferences.PreferenceError, match="cannot read the answer"):
        preference_data.parse_answer("left one", 2)
    drive, created = drives.save("d", drives.DriveSettings(overlap=3))
    assert not created and drive.overlap == 3, "saving again changes the settings"


def test_deleting_an_item_drops_its_place_in_the_drive():
    (item,), _ = drive_with(1)
    drives.take("d", "ann")
    assert preferences.delete_item(item)
    assert drives.progress("d")["items"] == 0 and drives.take("d", "bob") is None


# --- gold checks and exports ---------------------------------------------------------------------


def labelled_drive(threshold: float = 0.5) -> tuple[list[str], list[str]]:
    """Three annotators, overlap 3, two gold items: 'careless' gets both gold items wrong."""
    regular, gold = drive_with(3, n_gold=2, overlap=3, gold_threshold=threshold)
    for name in ("ann", "bob", "careless"):
        for item in [*regular, *gold]:
            right = good_letter(item)
            wrong = "B" if right == "A" else "A"
            if name == "careless":
                choice = wrong
            elif item == regular[2] and name == "bob":
                choice = "tie"
            else:
                choice = right
            preferences.submit_label(item, name, choice)
    return regular, gold


def test_gold_accuracy_is_tracked_per_annotator():
    labelled_drive()
    items = list(preferences.all_items())
    record = preference_stats.gold_accuracy(items, drives.gold_answers())
    assert record["ann"] == {"gold_answered": 2, "gold_correct": 2, "gold_accuracy": 1.0}
    assert record["careless"]["gold_accuracy"] == 0.0
    answer = drives.GoldAnswer("tie", [[0, 1]])
    assert answer.matches("tie", [[0, 1]]) and not answer.matches("both_bad", [[0, 1]])


def test_gold_filter_changes_the_export_as_documented(tmp_path):
    regular, gold = labelled_drive(threshold=0.5)
    kept = preference_data.export(tmp_path / "kept.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert kept["excluded_labels"] == 5, "careless's 5 labels fall below the drive's gold threshold"
    assert {row["annotator"] for row in rows} == {"ann", "bob"}
    row = next(r for r in rows if r["item_id"] == regular[0])
    assert row["drive"] == "d" and row["annotators"] == ["ann", "bob", "careless"] and row["passed_gold"] is True
    assert row["item_agreement"] == 1.0 and row["gold_item"] is False and row["gold_accuracy"] == 1.0
    assert row["chosen"][0]["content"].startswith("good")
    everything = preference_data.export(
        tmp_path / "all.jsonl", options=preference_data.ExportOptions(gold_filter=False)
    )
    assert everything["excluded_labels"] == 0 and everything["rows"] == kept["rows"] + 5
    marked = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert {r["passed_gold"] for r in marked if r["annotator"] == "careless"} == {False}
    drives.save("d", drives.DriveSettings(overlap=3, gold_threshold=0.0))
    assert preference_data.export(tmp_path / "open.jsonl")["excluded_labels"] == 0, "threshold 0 keeps everyone"
    preference_data.export(tmp_path / "p.parquet", "parquet")  # None and list columns survive Arrow


def test_consensus_keeps_items_whose_labels_agree(tmp_path):
    regular, gold = labelled_drive(threshold=0.0)  # careless kept: every item has a 2-1 or 1-1-1 split
    options = preference_data.ExportOptions
    majority = preference_data.export(tmp_path / "m.jsonl", options=options(consensus="majority"))
    # regular 0, 1 and both gold items: ann and bob right, careless wrong -> 2 of 3; regular 2: right, tie, wrong
    assert majority["rows"] == 4 and majority["split_items"] == 1
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert all(r["annotator"] == "consensus" and r["chosen"][0]["content"].startswith("good") for r in rows)
    assert [r["item_agreement"] for r in rows] == pytest.approx([2 / 3] * 4)
    ignoring = preference_data.export(
        tmp_path / "i.jsonl", options=options(consensus="majority", consensus_ties="ignore")
    )
    assert ignoring["rows"] == 4 and ignoring["split_items"] == 1, "right vs wrong with the tie abstaining: 1-1"
    unanimous = preference_data.export(tmp_path / "u.jsonl", options=options(consensus="unanimous"))
    assert unanimous["rows"] == 0 and unanimous["split_items"] == 5
    filtered = preference_data.ExportOptions(consensus="unanimous", consensus_ties="ignore")
    drives.save("d", drives.DriveSettings(overlap=2, gold_threshold=0.5))  # careless filtered out
    found = preference_data.training_rows(options=filtered)
    assert len(found.pairs) == 5 and found.excluded_labels == 5, "with careless gone, ann and bob agree"
    drives.save("d", drives.DriveSettings(overlap=3, gold_threshold=0.5))
    short = preference_data.training_rows(options=filtered)
    assert short.incomplete_items == 5 and not short.pairs, "two kept labels are short of an overlap of 3"


def test_items_file_with_gold_answers_survives_shuffling(tmp_path):
    drives.save("d", drives.DriveSettings(overlap=2))
    source = tmp_path / "items.jsonl"
    rows = [
        {"prompt": f"q{i}", "responses": [f"right {i}", {"text": f"wrong {i}", "source": "w"}], "gold": "A"}
        for i in range(6)
    ]
    rows += [
        {"prompt": "pair", "chosen": "right pair", "rejected": "wrong pair"},
        {"prompt": "three", "responses": ["x", "y", "right three"], "gold": "C > A = B"},
        {"prompt": "plain", "responses": ["one", "two"]},
        {"prompt": "bad gold", "responses": ["one", "two"], "gold": "left"},
        {"responses": ["no prompt"]},
        "not an object",
    ]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    found = preference_data.import_drive_items(source, "d")
    assert found.imported == 9 and found.gold == 8 and [e["line"] for e in found.errors] == [10, 11, 12]
    for item_id, answer in drives.gold_answers("d").items():
        item = preferences.get_item(item_id)
        best = [item.responses[p].text for p in answer.ranking[0]]
        assert best[0].startswith("right"), (item.prompt_text, answer)
    with pytest.raises(drives.DriveError, match="no label drive"):
        preference_data.import_drive_items(source, "missing")


def test_cli_drive_commands_and_stats_contract(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["prefs", "drive", "create", "cli", "--overlap", "2", "--gold-threshold", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overlap"] == 2
    assert main(["prefs", "drive", "create", "cli", "--overlap", "99"]) == 2
    capsys.readouterr()
    items = tmp_path / "items.jsonl"
    items.write_text(
        "\n".join(json.dumps({"prompt": f"q{i}", "responses": [f"a{i}", f"b{i}"]}) for i in range(2))
        + "\n"
        + json.dumps({"prompt": "g", "chosen": "yes", "rejected": "no"})
        + "\n"
    )
    assert main(["prefs", "drive", "add", "cli", "--file", str(items), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"drive": "cli", "added": 3, "gold": 1, "errors": []}
    for name in ("ann", "bob"):
        while (item := drives.take("cli", name)) is not None:
            preferences.submit_label(item, name, "A" if name == "ann" else "B")
    assert main(["prefs", "drive", "status", "cli", "--annotator", "ann", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    # one of the two got the gold item wrong: below the 0.5 threshold, their 2 labels do not count (issue 37)
    assert status["labels"] == 2 and status["labels_needed"] == 4 and status["you"]["done"] == 3
    assert main(["prefs", "stats", "--drive", "cli", "--rounds", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    people = {p["name"]: p for p in report["annotators"]}
    assert set(people) == {"ann", "bob"} and report["items"] == 3
    assert {people["ann"]["gold_accuracy"], people["bob"]["gold_accuracy"]} == {0.0, 1.0}
    assert set(report["agreement"]) >= {"raw", "krippendorff_alpha"}
    out = tmp_path / "c.jsonl"
    assert main(["prefs", "export", "--out", str(out), "--consensus", "--no-gold-filter", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["consensus"] == "majority" and exported["split_items"] == 3 and exported["rows"] == 0
    gold_item = next(iter(drives.gold_answers("cli")))
    assert main(["prefs", "drive", "gold", gold_item, "--clear"]) == 0
    assert main(["prefs", "drive", "gold", gold_item]) == 2
    assert main(["prefs", "stats", "--drive", "nope"]) == 2
    assert main(["prefs", "drive", "add", "cli"]) == 2


# --- anonymous visitors on a public drive (issue 35, M2) ---------------------------------------------


def test_anonymous_visitors_are_capped_per_address(monkeypatch):
    from pipelines import config

    monkeypatch.setenv("PLAYGROUND_ANON_HOLDS_PER_ADDRESS", "3")
    monkeypatch.setenv("PLAYGROUND_ANON_VISITORS_PER_HOUR", "4")
    config.reset_settings()
    drive_with(20, overlap=2, gold_rate=0.0)
    held = [drives.take("d", f"anon:{i}", client="net-1", now=1000.0) for i in range(3)]
    assert len(set(held)) == 3  # two visitors from one address never share an item
    with pytest.raises(drives.DriveError, match="3 items are already held by visitors from your network"):
        drives.take("d", "anon:3", client="net-1", now=1001.0)
    assert drives.take("d", "anon:0", client="net-1", now=1002.0) == held[0]  # one's own hold still comes back
    assert drives.take("d", "anon:9", client="net-2", now=1003.0)  # another network is not held back
    assert drives.take("d", "alice", client="net-1", now=1004.0)  # nor a signed-in annotator behind the NAT
    for i in range(3):  # their labels free the holds, but the address has now brought 3 new visitors
        preferences.submit_label(held[i], f"anon:{i}", "A", client="net-1")
    assert drives.take("d", "anon:3", client="net-1", now=1010.0)
    with pytest.raises(drives.DriveError, match="4 new anonymous annotators came from your network"):
        drives.take("d", "anon:4", client="net-1", now=1011.0)
    assert drives.take("d", "anon:4", client="net-1", now=1011.0 + 3600)  # an hour later


def test_one_address_never_supplies_two_labels_of_an_item():
    regular, _ = drive_with(1, overlap=2, gold_rate=0.0)
    [item] = regular
    assert drives.take("d", "anon:a", client="net-1") == item
    assert drives.take("d", "anon:b", client="net-1") is None  # the only item is already labelled from there
    with pytest.raises(drives.DriveError, match="another visitor from your network already labels this item"):
        preferences.submit_label(item, "anon:b", "A", client="net-1")  # nor by voting on its id directly
    preferences.submit_label(item, "anon:a", "A", client="net-1")
    assert drives.take("d", "anon:c", client="net-2") == item  # a second network fills the second place
    assert drives.take("d", "bob", client="net-1") is None  # (full now)


def test_a_drive_for_signed_in_annotators_only():
    regular, _ = drive_with(2, overlap=3, signed_in_only=True)
    with pytest.raises(drives.DriveError, match="for signed-in annotators"):
        drives.take("d", "anon:x", client="net-1")
    with pytest.raises(drives.DriveError, match="for signed-in annotators"):
        preferences.submit_label(regular[0], "anon:x", "A", client="net-1")
    assert drives.take("d", "alice") in regular
    assert drives.get("d").settings.signed_in_only


def test_drive_names_and_items_are_checked(tmp_path):
    """Issue 42: drive names were not validated, and a one-response item was accepted into a drive."""
    for bad in ("<b>x</b>", "../up", "\u202egnp", "-dash-first"):
        with pytest.raises(drives.DriveError, match="letters, digits, spaces"):
            drives.save(bad)
    drives.save("Week 3 - set.A")
    single = preferences.create_item([Message("user", "q")], [ResponseDraft("only one")])
    with pytest.raises(drives.DriveError, match="needs 2 or more to compare"):
        drives.add_items("Week 3 - set.A", [single.id])
    rows = tmp_path / "items.jsonl"
    rows.write_text(json.dumps({"prompt": "q", "responses": ["only one"]}) + "\n")
    found = preference_data.import_drive_items(rows, "Week 3 - set.A")
    assert found.imported == 0 and "needs 2 to 4 responses" in found.errors[0]["error"]


def test_labels_below_the_gold_threshold_stop_counting_and_their_items_are_served_again(tmp_path):
    """Issue 37: 10 items x overlap 3 + 2 gold items, 5 careful annotators and 1 who answers wrong.
    Once the adversary falls below the threshold its labels no longer fill places, so its items go
    back to the careful annotators, and the majority-consensus export has every item."""
    regular, gold = drive_with(10, n_gold=2, overlap=3, gold_threshold=0.5, gold_rate=0.1)
    careful = [f"careful-{n}" for n in range(5)]
    rng = random.Random(3)
    adversary_regular = 0
    busy = True
    while busy:  # round after round, the adversary first, until nobody is given anything
        busy = False
        for name in ["adversary", *careful]:
            item = drives.take("d", name, rng=rng)
            if item is None:
                continue
            busy = True
            right = good_letter(item)
            if name == "adversary":
                adversary_regular += item in regular
                preferences.submit_label(item, name, "B" if right == "A" else "A")
            else:
                preferences.submit_label(item, name, right)
    assert adversary_regular >= 1, "the adversary labelled regular items before meeting a gold one"
    report = drives.progress("d")
    assert report["labels"] == 30 and report["labels_needed"] == 30 and report["complete_items"] == 10
    by_item = Counter(
        lb.item_id for item in preferences.all_items() for lb in item.labels if lb.annotator != "adversary"
    )
    assert all(by_item[i] == 3 for i in regular), "exactly k counted labels per item, none past it"
    consensus = preference_data.export(
        tmp_path / "c.jsonl", options=preference_data.ExportOptions(consensus="majority")
    )
    adversary = next(a for a in report["annotators"] if a["name"] == "adversary")
    assert consensus["rows"] == 10 + len(gold) and consensus["incomplete_items"] == 0, "every item, and the checks"
    assert consensus["excluded_labels"] == adversary["done"], "none of the adversary's labels is in it"
