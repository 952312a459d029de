"""Alembic's environment: migrations run on the connection `pipelines.store.schema` hands over.

`pipelines.store.db` opens that connection and its transaction itself (under the database's write
lock), so every process that starts on an old database waits for one upgrade instead of racing
it. From the `alembic` command line (`make migration`, a developer writing a revision on a
scratch database) it connects to PLAYGROUND_DATABASE_URL or the data directory's SQLite file.
"""

from __future__ import annotations

from alembic import context

from pipelines.store.tables import Base


def _configure(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER TABLE is limited
        compare_type=True,
    )


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:  # inside pipelines.store.schema: its transaction, its lock
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from sqlalchemy import create_engine

    from pipelines.store.db import database_url

    with create_engine(database_url()).connect() as connection:  # the alembic command line
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against the database")
run()
