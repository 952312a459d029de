"""Versioned schema: databases made by earlier versions are upgraded in place, on SQLite and PostgreSQL.

The old databases are built from `tests/legacy_schema.py`, a verbatim copy of the table
definitions before migrations existed, and filled with rows the way that version wrote them.
"""

from __future__ import annotations

import json
import logging
import multiprocessing

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from pipelines import config
from pipelines.cli import main as cli
from pipelines.labels import drives, preference_data, preferences
from pipelines.store import db, jobs, schema
from pipelines.store.tables import Base
from tests import legacy_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, data_dir, monkeypatch):
    from tests import postgres

    with postgres.database_for(request, monkeypatch) as kind:
        yield kind


def _raw():
    """An engine on the test's database that upgrades nothing (what an old version would open)."""
    return create_engine(db.database_url())


def _differences(connection) -> list:
    return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)


def _old_database(*, with_drives: bool) -> None:
    """A database as the playground wrote it before migrations: tables and rows of that version."""
    eng = _raw()
    tables = None if with_drives else [legacy_schema.Base.metadata.tables[name] for name in legacy_schema.PRE_DRIVES]
    legacy_schema.Base.metadata.create_all(eng, tables=tables)
    messages = json.dumps([{"role": "user", "content": "Name a colour."}])
    with eng.begin() as c:
        for item in ("item1", "item2"):
            c.execute(
                text("INSERT INTO pref_items VALUES (:id, :prompt, 'Name a colour.', 'test', 1.0, 'ann')"),
                {"id": item, "prompt": messages},
            )
            for position, answer in enumerate(("Red.", "Blue.")):
                c.execute(
                    text("INSERT INTO pref_responses VALUES (:id, :item, :pos, :text, 'base', 'tiny', '{}', 7)"),
                    {"id": f"{item}-{position}", "item": item, "pos": position, "text": answer},
                )
        c.execute(
            text(
                "INSERT INTO pref_labels (item_id, annotator, choice, ranking, rationale, created_at, session) "
                "VALUES ('item1', 'ann', 'A', '[[0], [1]]', 'clearer', 2.0, NULL)"
            )
        )
        c.execute(
            text(
                "INSERT INTO jobs (id, kind, name, status, spec, created_at, foreground, progress, step, "
                "total_steps, message, result, cancel_requested) "
                "VALUES ('job1', 'finetune', 'old', 'succeeded', '{}', 1.0, false, 1.0, 2, 2, 'finished', '{}', false)"
            )
        )
        if with_drives:
            c.execute(text("INSERT INTO pref_drives VALUES ('week1', 2, 0.5, 0.1, 600.0, 1.0, 'lead', 17)"))
            c.execute(text("INSERT INTO pref_drive_items VALUES ('item2', 'week1', NULL, 1.0)"))
            c.execute(
                text(
                    "INSERT INTO pref_assignments (drive, item_id, annotator, served_at) VALUES ('week1', 'item2', 'ann', 3.0)"
                )
            )
    eng.dispose()


def _revision() -> str | None:
    eng = _raw()
    with eng.connect() as c:
        found = MigrationContext.configure(c).get_current_revision()
    eng.dispose()
    return found


def test_the_revisions_build_exactly_the_tables_module(database):
    """Revisions applied one by one to an empty database give what `tables.py` defines (a
    new database is made from `tables.py` directly: the two must not drift apart)."""
    eng = _raw()
    with eng.connect() as c:
        command.upgrade(schema.config(c), "head")
        c.commit()
        assert _differences(c) == []
        assert MigrationContext.configure(c).get_current_revision() == schema.head()
    eng.dispose()


def test_a_new_database_is_created_at_the_newest_revision(database):
    db.engine()
    assert _revision() == schema.head()
    eng = _raw()
    with eng.connect() as c:
        assert _differences(c) == []
    eng.dispose()


@pytest.mark.parametrize("with_drives", [False, True], ids=["before-drives", "with-drives"])
def test_a_database_made_before_migrations_is_upgraded_in_place(database, with_drives):
    _old_database(with_drives=with_drives)
    assert _revision() is None

    # the store opens it as it is: nothing lost, the new column there, the old one gone
    item = preferences.get_item("item1")
    assert [r.text for r in item.responses] == ["Red.", "Blue."]
    assert [(lb.annotator, lb.choice, lb.rationale) for lb in item.labels] == [("ann", "A", "clearer")]
    assert jobs.get("job1").status == jobs.SUCCEEDED
    assert _revision() == schema.head()
    eng = _raw()
    with eng.connect() as c:
        assert _differences(c) == []
        columns = {table: {col["name"] for col in inspect(c).get_columns(table)} for table in ("jobs", "pref_drives")}
    eng.dispose()
    assert "heartbeat_at" in columns["jobs"] and "serves" not in columns["pref_drives"]

    if with_drives:  # the drive, its items and who holds them survive (no table was dropped and copied)
        assert drives.names() == ["week1"]
        assert drives.drive_of("item2") == "week1"
        assert drives.take("week1", "ann", now=100.0) == "item2"  # still held (lease 600 s from 3.0): it comes back
    drives.save("week2", drives.DriveSettings(overlap=3), created_by="lead")  # new rows work at the new schema
    assert "week2" in drives.names()
    rows = preference_data.training_rows().pairs
    assert len(rows) == 1 and rows[0]["chosen"][-1]["content"] == "Red."


def test_a_database_at_an_older_revision_is_upgraded(database):
    eng = _raw()
    with eng.connect() as c:
        command.upgrade(schema.config(c), "0002")
        c.commit()
        c.execute(text("INSERT INTO pref_drives VALUES ('d', 1, 0.0, 0.1, 60.0, 1.0, NULL, 0)"))
        c.commit()
    eng.dispose()
    assert _revision() == "0002"
    assert drives.names() == ["d"]
    assert _revision() == schema.head()


def test_a_database_from_a_newer_playground_is_refused_and_left_alone(database):
    db.engine()
    db.dispose_all()
    eng = _raw()
    with eng.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    eng.dispose()
    with pytest.raises(schema.SchemaError, match=rf"revision 0099.*newest is {schema.head()}.*newer version"):
        db.engine()
    assert _revision() == "0099"


def test_db_status_and_upgrade_commands(database, capsys):
    _old_database(with_drives=False)
    assert cli(["db", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["revision"] is None and status["up_to_date"] is False and status["tables"] == 5
    assert status["head"] == schema.head() and status["database"].split(":")[0] in ("sqlite", "postgresql+psycopg")
    assert _revision() is None  # status changed nothing
    assert cli(["db", "upgrade", "--json"]) == 0
    upgraded = json.loads(capsys.readouterr().out)
    assert upgraded["revision"] == schema.head() and upgraded["up_to_date"] and upgraded["previous_revision"] is None
    assert upgraded["tables"] == len(Base.metadata.tables)


def _open_and_report(queue, barrier) -> None:  # noqa: ANN001 - a spawned process: opens the database, says what it did
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger("pipelines.store.db").addHandler(Collect())
    logging.getLogger("pipelines.store.db").setLevel(logging.INFO)
    barrier.wait(timeout=120)  # every process imported and ready: they open the database together
    try:
        db.engine()
        queue.put(("ok", records))
    except Exception as error:  # noqa: BLE001 - reported to the test
        queue.put(("error", [repr(error)]))


@pytest.mark.slow
def test_processes_opening_an_old_database_together_upgrade_it_once(database):
    """App replicas, job workers and the CLI may start at once: one upgrades, the others wait."""
    _old_database(with_drives=True)
    config.reset_settings()
    spawn = multiprocessing.get_context("spawn")
    queue, barrier = spawn.Queue(), spawn.Barrier(4)
    processes = [spawn.Process(target=_open_and_report, args=(queue, barrier)) for _ in range(4)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert all(status == "ok" for status, _ in results), results
    upgrades = [message for _, messages in results for message in messages if "upgraded" in message]
    assert len(upgrades) == 1 and f"from 0002 to {schema.head()}" in upgrades[0], results
    assert _revision() == schema.head()
    assert drives.names() == ["week1"]


def test_opening_a_database_not_yet_in_wal_waits_for_a_writer(data_dir):
    """A restored snapshot (or a database from another tool) is not in WAL mode; switching needs
    an exclusive lock, and SQLite answers "locked" at once, without its busy wait, while another
    process writes (seen in CI: four processes opening an old database together, one migrating)."""
    import sqlite3
    import threading
    import time

    path = data_dir / "playground.db"
    _old_database(with_drives=False)
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE jobs SET message = 'held' WHERE id = 'job1'")
    release = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        db.engine()  # before the fix: sqlite3.OperationalError: database is locked, immediately
    finally:
        release.join()
        writer.close()
    assert time.monotonic() - started >= 0.4  # it waited for the writer
    assert _revision() == schema.head() and jobs.get("job1").message == "held"
