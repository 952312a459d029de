"""Backups for a disk that does not survive a restart: snapshot, wipe, restore, on real SQLite files.

A "restart" here is what a Space does: the data directory is deleted and the next process opens
the database afresh; the labels must come back from the latest snapshot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelines import config
from pipelines.cli import main as cli
from pipelines.labels import backup, preferences
from pipelines.labels.preferences import ResponseDraft
from pipelines.store import db, snapshots
from tests import hub_standin
from tests.helpers import ROOT


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    target = tmp_path / "bucket"
    monkeypatch.setattr(snapshots, "restored_at_start", None)  # what this process restored: per test
    monkeypatch.setattr(snapshots, "unreadable_at_start", {})
    monkeypatch.setenv("PLAYGROUND_BACKUP_DIR", str(target))
    config.reset_settings()
    db.dispose_all()
    yield target
    db.dispose_all()


def _label(prompt: str, annotator: str = "ann", choice: str = "A") -> str:
    item = preferences.create_item(
        [{"role": "user", "content": prompt}], [ResponseDraft("Red."), ResponseDraft("Blue.")], origin="test"
    )
    preferences.submit_label(item.id, annotator, choice)
    return item.id


def _restart(data_dir: Path) -> None:
    """What a Space restart does to local state: the whole data directory is gone."""
    db.dispose_all()
    shutil.rmtree(data_dir)
    data_dir.mkdir()


def test_labels_survive_a_restart_through_a_directory_snapshot(data_dir, bucket):
    ids = [_label(f"Colour {i}?") for i in range(3)]
    result = backup.snapshot()
    assert result.stored == [str(bucket)] and result.as_dict()["labels"] == 3 and not result.failed
    exported = [json.loads(line) for line in (bucket / "exports" / "preferences.jsonl").read_text().splitlines()]
    assert len(exported) == 3 and {"prompt", "chosen", "rejected", "item_id"} <= set(exported[0])
    assert backup.snapshot(previous=result.sha256).unchanged  # nothing new: nothing sent

    _restart(data_dir)
    assert sorted(item.id for item in preferences.list_items()) == sorted(ids)  # restored on open
    assert snapshots.restored_at_start is not None and snapshots.restored_at_start[0].counts["pref_labels"] == 3
    assert all(len(preferences.get_item(i).labels) == 1 for i in ids)
    _label("After the restart?")  # and it goes on from there
    assert len(preferences.list_items()) == 4


def test_a_database_with_data_is_never_overwritten(data_dir, bucket):
    _label("In the snapshot?")
    backup.snapshot()
    _label("Only here?")  # labelled after the snapshot: a restore would lose it
    db.dispose_all()
    assert snapshots.restore_if_empty(config.get_settings(), data_dir / "playground.db") is None
    assert sorted(i.prompt_text for i in preferences.list_items()) == ["In the snapshot?", "Only here?"]
    assert cli(["db", "restore"]) == 2  # refused, with the reason


def test_a_damaged_latest_snapshot_falls_back_to_the_one_before(data_dir, bucket, caplog):
    _label("First?")
    first = backup.snapshot()
    _label("Second?")
    second = backup.snapshot()
    assert first.sha256 != second.sha256
    manifest = json.loads((bucket / "latest.json").read_text())
    damaged = bucket / manifest["path"]
    damaged.write_bytes(damaged.read_bytes()[:4096])  # a truncated upload, say
    _restart(data_dir)
    assert [i.prompt_text for i in preferences.list_items()] == ["First?"]
    assert "does not match its manifest" in caplog.text


def test_snapshots_are_consistent_while_annotators_write(data_dir, bucket):
    """The backup API copies one transaction's view: an item is never there without its responses
    (a plain file copy of a database being written can catch half a transaction, or worse)."""
    _label("Warm-up?")
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            _label(f"Busy {n}?")
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        results = [backup.snapshot() for _ in range(5)]
    finally:
        stop.set()
        writer.join()
    for result in results:  # an item and its responses are one transaction; its label is the next one
        assert result.counts["pref_responses"] == 2 * result.counts["pref_items"]
        assert result.counts["pref_items"] - 1 <= result.counts["pref_labels"] <= result.counts["pref_items"]
    assert results[-1].counts["pref_items"] > results[0].counts["pref_items"]  # they ran while writes went on
    assert len(list((bucket / "snapshots").glob("*.db"))) == 5


def test_old_snapshots_are_pruned_to_the_kept_number(data_dir, bucket, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_BACKUP_KEEP", "2")
    config.reset_settings()
    for i in range(4):
        _label(f"Q{i}?")
        backup.snapshot()
    assert len(list((bucket / "snapshots").glob("*.db"))) == 2
    assert len(list((bucket / "snapshots").glob("*.json"))) == 2


def test_backups_refuse_clearly_when_not_configured_or_not_sqlite(data_dir, monkeypatch, capsys):
    with pytest.raises(backup.BackupUnavailable, match="PLAYGROUND_BACKUP_DIR or PLAYGROUND_BACKUP_REPO"):
        backup.snapshot()
    assert cli(["db", "backup"]) == 2
    monkeypatch.setenv("PLAYGROUND_BACKUP_DIR", str(data_dir / "b"))
    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1:1/x")
    config.reset_settings()
    with pytest.raises(backup.BackupUnavailable, match="use its own backups"):
        backup.snapshot()
    assert backup.start() is None
    monkeypatch.setenv("PLAYGROUND_BACKUP_INTERVAL", "1")
    with pytest.raises(ValueError, match="PLAYGROUND_BACKUP_INTERVAL must be at least 10"):
        config.Settings()
    monkeypatch.setenv("PLAYGROUND_BACKUP_INTERVAL", "60")
    monkeypatch.setenv("PLAYGROUND_BACKUP_KEEP", "0")
    with pytest.raises(ValueError, match="PLAYGROUND_BACKUP_KEEP must be at least 1"):
        config.Settings()
    monkeypatch.setenv("PLAYGROUND_BACKUP_KEEP", "3")
    monkeypatch.setenv("PLAYGROUND_BACKUP_REPO", "labels-without-owner")
    with pytest.raises(ValueError, match="PLAYGROUND_BACKUP_REPO must be a Hub dataset id like user/labels"):
        config.Settings()


def test_the_dataset_tab_says_when_the_last_snapshot_was_taken(data_dir, bucket, monkeypatch):
    from playground import dataset

    _label("Shown?")
    monkeypatch.setattr(backup, "_running", None)  # restored after the test: no thread leaks into others
    running = backup.start()
    assert running is not None
    try:
        assert "Backups: every 300 s; none taken yet." in dataset.dataset_view()[0]
        assert running.run_once() is not None
        summary = dataset.dataset_view()[0]
        assert "Backups: last snapshot at " in summary and f"(1 label) to {bucket}; every 300 s." in summary
        assert running.run_once().unchanged  # nothing new: nothing sent, and the line still names the last one
        assert f"(1 label) to {bucket}; every 300 s." in dataset.dataset_view()[0]
    finally:
        running.stop()


def test_a_space_without_backups_is_warned(data_dir, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "me/playground")
    config.reset_settings()
    assert "wiped at every restart" in backup.status_line()
    monkeypatch.setenv("PLAYGROUND_BACKUP_REPO", "me/labels")
    config.reset_settings()
    assert backup.status_line() is None  # configured (the app's thread reports once it runs)


def test_db_backup_and_restore_commands(data_dir, bucket, capsys):
    _label("CLI?")
    assert cli(["db", "backup", "--json"]) == 0
    taken = json.loads(capsys.readouterr().out)
    assert taken["labels"] == 1 and taken["stored"] == [str(bucket)]
    _restart(data_dir)
    assert cli(["db", "restore", "--json"]) == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["restored"] and restored["counts"]["pref_labels"] == 1
    assert restored["snapshot"].startswith("snapshots/")


@pytest.fixture
def standin_hub(data_dir, monkeypatch):
    """The stand-in Hub on loopback, with the app's backups pointed at the repo `me/class-labels`."""
    from huggingface_hub import constants

    monkeypatch.setattr(snapshots, "restored_at_start", None)
    monkeypatch.setattr(snapshots, "unreadable_at_start", {})
    with hub_standin.running() as (endpoint, hub):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite is offline; this Hub is loopback
        monkeypatch.setenv("HF_TOKEN", "hf_standin_token")
        monkeypatch.setenv("PLAYGROUND_BACKUP_REPO", "me/class-labels")
        config.reset_settings()
        db.dispose_all()
        yield hub


def test_the_hub_store_through_huggingface_hub_against_a_stand_in(data_dir, standin_hub, monkeypatch):
    """The same cycle through a Hub dataset repo: one commit per snapshot holding the database, its
    manifest and the exports; a restart restores from it; an outage leaves the other store's copy."""
    hub = standin_hub
    _label("To the Hub?")
    result = backup.snapshot()
    assert result.stored == ["the Hub dataset me/class-labels"]
    assert hub.commits[-1]["files"] == [
        "database.db",
        "exports/preferences.jsonl",
        "exports/unpaired.jsonl",
        "latest.json",
    ]
    assert json.loads(hub.repos["me/class-labels"]["latest.json"])["sha256"] == result.sha256

    _restart(data_dir)
    assert [i.prompt_text for i in preferences.list_items()] == ["To the Hub?"]

    monkeypatch.setenv("PLAYGROUND_BACKUP_DIR", str(data_dir.parent / "bucket"))
    config.reset_settings()
    _label("During an outage?")
    hub.fail_commits = 10
    down = backup.snapshot()
    assert down.stored == [str(data_dir.parent / "bucket")] and "the Hub dataset me/class-labels" in down.failed
    assert len(hub.commits) == 1


def test_a_store_unreadable_at_start_is_not_overwritten_with_the_empty_database(data_dir, standin_hub):
    """A restart while the Hub refuses to serve the snapshot: the app starts empty (it must start),
    but it never sends that empty database as the newest snapshot."""
    _label("Precious?")
    backup.snapshot()
    standin_hub.refuse_downloads = True
    _restart(data_dir)
    assert preferences.list_items() == []  # started, empty: the snapshot could not be read
    assert "the Hub dataset me/class-labels" in snapshots.unreadable_at_start
    result = backup.snapshot()
    assert (
        result.stored == []
        and "could make an empty database the latest" in result.failed["the Hub dataset me/class-labels"]
    )
    assert len(standin_hub.commits) == 1  # the good snapshot is still the latest


def test_an_empty_hub_repo_restores_nothing_and_the_app_starts(data_dir, standin_hub):
    assert "me/class-labels" not in standin_hub.repos
    assert preferences.list_items() == []  # the repo does not exist yet: start empty, nothing alarming


# --- killed during a snapshot ------------------------------------------------------------------

_SNAPSHOT_LOOP = """
import sys
from pipelines.labels import backup
while True:
    backup.snapshot()
"""


def _big_database(path: Path, items: int = 1500) -> None:
    """Rows with long texts: a snapshot takes long enough to be killed in the middle of it."""
    db.engine()
    connection = sqlite3.connect(path)
    with connection:
        for i in range(items):
            connection.execute(
                "INSERT INTO pref_items VALUES (?, '[]', ?, 'bulk', ?, NULL)", (f"item{i}", "x" * 20000, float(i))
            )
    connection.close()


@pytest.mark.slow
def test_a_snapshot_killed_half_way_leaves_the_previous_one_valid(data_dir, bucket):
    _big_database(data_dir / "playground.db")
    first = backup.snapshot()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed_mid_write = 0
    for round_ in range(3):
        with sqlite3.connect(data_dir / "playground.db") as connection:  # something new to snapshot
            connection.execute("INSERT INTO pref_items VALUES (?, '[]', 'new', 'bulk', 0, NULL)", (f"new{round_}",))
        loop = subprocess.Popen([sys.executable, "-c", _SNAPSHOT_LOOP], env=env, cwd=ROOT)
        deadline = time.time() + 120
        try:
            while time.time() < deadline:  # kill it the moment a snapshot is being written
                if any((bucket / "snapshots").glob(".*.partial")):
                    loop.send_signal(signal.SIGKILL)
                    killed_mid_write += 1
                    break
                time.sleep(0.001)
        finally:
            loop.kill()
            loop.wait()
        manifest = json.loads((bucket / "latest.json").read_text())  # still a whole document
        stored = bucket / manifest["path"]
        assert snapshots.sha256_of(stored) == manifest["sha256"]
        assert snapshots.check_database(stored)["counts"]["pref_items"] >= first.counts["pref_items"]
    assert killed_mid_write >= 1
    # issue 35, L8: what the killed writers left (a half-copied snapshot, temporary files, a scratch
    # directory) is gone after the next snapshot; a live writer's file would be kept
    live = bucket / "snapshots" / f".20990101T000000Z-000000001-{os.getpid()}.db.partial"
    live.write_bytes(b"being written")
    backup.snapshot()
    leftovers = [p.name for p in bucket.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".tmp-")]
    assert leftovers == [live.name]
    assert list(data_dir.glob("playground-backup-*")) == []
    live.unlink()
    _restart(data_dir)
    assert len(preferences.list_items(limit=5000)) >= 1500
