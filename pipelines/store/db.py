"""The database: SQLite in WAL mode in the data directory, or any SQLAlchemy URL.

SQLite is the default because it needs nothing installed and, in WAL mode with a busy timeout,
several threads and processes (the app, job workers, the CLI) can write to it safely. Teams that
run several app replicas point PLAYGROUND_DATABASE_URL at PostgreSQL instead; nothing else
changes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.orm import Session, sessionmaker

from pipelines.config import Settings, get_settings
from pipelines.store import schema, snapshots

log = logging.getLogger(__name__)


_engines: dict[str, Engine] = {}
_locking_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.path('playground.db')}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for a lock instead of failing
    _wal(cursor)  # readers never block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged label survives a power cut
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _wal(cursor, seconds: float = 30.0) -> None:  # noqa: ANN001
    """Switch a database to WAL, waiting for other processes: a database not yet in WAL (a restored
    snapshot, one made by another tool) needs an exclusive lock for it, and SQLite answers "locked"
    at once, without its busy wait, while another connection holds a write transaction (it would
    deadlock otherwise). Seen with processes opening such a database together, one migrating it."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_engine(url: str) -> Engine:
    """A SQLite engine whose connections wait for locks and use WAL (`_sqlite_pragmas`)."""
    eng = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(eng, "connect", _sqlite_pragmas)
    return eng


def _new_engine(url: str) -> Engine:
    return _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url, pool_pre_ping=True)


def engine(settings: Settings | None = None) -> Engine:
    """One engine per database URL per process, on a database at the newest schema revision."""
    url = database_url(settings)
    with _lock:
        if url not in _engines:
            if url.startswith("sqlite"):
                file = sqlite_file(url)
                if file is not None:  # a restarted Space: its labels come back from the latest snapshot
                    snapshots.restore_if_empty(settings or get_settings(), file)
                _locking_engines[url] = _sqlite_locking_engine(url)
            eng = _new_engine(url)
            with _schema_transaction(eng, _locking_engines.get(url)) as connection:
                done = schema.upgrade(connection)
            if done != "up to date":
                log.info("database %s: schema %s", describe_url(settings), done)
            _engines[url] = eng
        return _engines[url]


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()


# Any 64-bit number, the same in every process: PostgreSQL's lock for "changing the schema".
_SCHEMA_LOCK = 0x706C_6179_6772_6E64


@contextmanager
def _schema_transaction(eng: Engine, locking: Engine | None) -> Iterator[Connection]:
    """A transaction that holds the database's write lock, so processes opening an old database
    at once upgrade it once: the first migrates, the others wait and then find it up to date.
    SQLite: BEGIN IMMEDIATE (`locking`). PostgreSQL: a transaction-scoped advisory lock (its DDL
    is transactional too: a failed upgrade leaves nothing half-done). Others: a plain transaction."""
    with (locking or eng).connect() as connection:
        with connection.begin():
            if eng.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            yield connection


@contextmanager
def _transaction(eng: Engine) -> Iterator[Session]:
    factory = sessionmaker(eng, expire_on_commit=False)
    with factory() as s:
        with s.begin():
            yield s


@contextmanager
def session(settings: Settings | None = None) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    with _transaction(engine(settings)) as s:
        yield s


def _begin_immediate(connection) -> None:  # noqa: ANN001
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _no_driver_transactions(dbapi_connection, _record) -> None:  # noqa: ANN001
    dbapi_connection.isolation_level = None  # the "begin" event below starts every transaction itself


def _sqlite_locking_engine(url: str) -> Engine:
    """For SQLite, a second engine whose transactions start with BEGIN IMMEDIATE (the write lock).

    pysqlite begins a transaction lazily, at the first write, so two serving transactions could
    both read "one place left" before either writes. Taking the lock at BEGIN makes the read and
    the write one step, across threads and processes (SQLAlchemy's documented pysqlite recipe).
    """
    eng = _sqlite_engine(url)
    event.listen(eng, "connect", _no_driver_transactions)
    event.listen(eng, "begin", _begin_immediate)
    return eng


@contextmanager
def locked_session(settings: Settings | None = None) -> Iterator[Session]:
    """A transaction that reads and writes as one step with every other `locked_session`.

    SQLite: it holds the database's write lock from its start. Other databases: a plain
    transaction; the caller locks the row it serialises on with `SELECT ... FOR UPDATE`.
    """
    eng = engine(settings)
    with _transaction(_locking_engines.get(database_url(settings), eng)) as s:
        yield s


# PostgreSQL's lock for "reading and writing the job queue as one step" (see `serialise`).
_QUEUE_LOCK = 0x706C_6179_6A6F_6273


def serialise(s: Session, key: int = _QUEUE_LOCK) -> None:
    """Inside a `locked_session`, make its reads and writes one step with every other caller of `key`:
    SQLite's session already holds the write lock; PostgreSQL takes a transaction-scoped advisory lock."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE, DELETE or INSERT touched (SQLAlchemy types `execute` as a plain Result)."""
    return result.rowcount if isinstance(result, CursorResult) else -1


def dispose_all() -> None:
    """Close every pooled connection (tests switch data directories between cases)."""
    with _lock:
        for eng in [*_engines.values(), *_locking_engines.values()]:
            eng.dispose()
        _engines.clear()
        _locking_engines.clear()


def schema_state(settings: Settings | None = None) -> schema.SchemaState:
    """Where the database's schema stands, read without upgrading it (`python -m pipelines db status`)."""
    eng = _new_engine(database_url(settings))
    try:
        with eng.connect() as connection:
            return schema.state(connection)
    finally:
        eng.dispose()


def describe_url(settings: Settings | None = None) -> str:
    """The database URL with any password hidden (for messages and `db status`)."""
    return make_url(database_url(settings)).render_as_string(hide_password=True)
