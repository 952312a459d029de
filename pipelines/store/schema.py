"""The database's schema, versioned: every database is brought to the newest revision on open.

`create_all` only creates missing tables: a column added to an existing table would never reach
a database made before it. The Alembic revisions in `pipelines/store/migrations/versions/` change a
database in place instead. On open (`pipelines.store.db.engine`, inside one transaction that holds
the database's write lock, so replicas, job workers and the CLI starting together upgrade once):

- an empty database gets every table of `tables.py` and is stamped with the newest revision
  (the revisions build the same schema: `tests/unit/test_migrations.py` compares them);
- a database with tables but no version was made before migrations existed (before revision
  0003): it is stamped with the revision its tables match (0001, or 0002 with label drives),
  then upgraded;
- a versioned one is upgraded to the newest revision; one written by a newer playground (a
  revision this code does not know) is refused with the versions named, and left as it is.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

# Alembic narrates every start at INFO ("setup plugin …", "Context impl SQLiteImpl"); what was done
# is logged once by `pipelines.store.db` instead. Set before the import: the plugin lines come from it.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import inspect  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402

from pipelines.errors import PlaygroundError  # noqa: E402
from pipelines.store.tables import Base  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent / "migrations"

# Databases made before versioned migrations: which revision their tables are.
FIRST, LABEL_DRIVES = "0001", "0002"


class SchemaError(PlaygroundError, RuntimeError):
    """The database's schema cannot be brought to this playground's; the message says why."""


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its revision (None: unversioned or empty) and this code's newest."""

    revision: str | None
    head: str
    names: frozenset[str]  # the database's tables, Alembic's own included

    @property
    def tables(self) -> int:
        """How many of the playground's tables (and any other) it holds, Alembic's own left out."""
        return len(self.names - {"alembic_version"})

    @property
    def up_to_date(self) -> bool:
        return self.revision == self.head


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, without an ini file: the scripts' folder and the open connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    newest = scripts().get_current_head()
    assert newest is not None, "pipelines/store/migrations/versions holds no revision"
    return newest


def state(connection: Connection) -> SchemaState:
    revision = MigrationContext.configure(connection).get_current_revision()
    return SchemaState(revision=revision, head=head(), names=frozenset(inspect(connection).get_table_names()))


def upgrade(connection: Connection) -> str:
    """Bring the database on `connection` to the newest revision; what was done, in a few words.

    The caller holds the database's write lock in the connection's open transaction and commits.
    """
    now = state(connection)
    if now.up_to_date:
        return "up to date"
    if now.revision is not None and now.revision not in {s.revision for s in scripts().walk_revisions()}:
        raise SchemaError(
            f"the database is at schema revision {now.revision}, which this playground does not know "
            f"(its newest is {now.head}): a newer version of the playground wrote it; run that version, "
            "or point PLAYGROUND_DATABASE_URL / PLAYGROUND_DATA_DIR at another database"
        )
    context = MigrationContext.configure(connection)
    if now.revision is None:
        if not now.names & set(Base.metadata.tables):
            Base.metadata.create_all(connection)
            context.stamp(scripts(), "head")
            return f"created at {now.head}"
        context.stamp(scripts(), LABEL_DRIVES if "pref_drives" in now.names else FIRST)
    before = context.get_current_revision()
    command.upgrade(config(connection), "head")
    return f"upgraded from {before} to {now.head}"
