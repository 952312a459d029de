"""A throwaway PostgreSQL server for tests: Debian's `postgresql` package, `initdb` + `pg_ctl` in a
temporary directory, on a free loopback port, as a non-root user (PostgreSQL refuses to run as root).

Nothing here is mocked: the store's tests run against this server exactly as they run against
SQLite. Without the package, `server()` yields None and the tests that need it skip, saying how
to install it (`.ci/run` installs it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import free_port

INSTALL = "install Debian's PostgreSQL (`sudo apt-get install postgresql`)"
USER = "playground-pg"


def binaries() -> Path | None:
    """The directory of initdb/pg_ctl (Debian keeps them out of PATH, under /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_user(command: list[str]) -> list[str]:
    """Run as a non-root user when we are root (created once; PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
    return ["runuser", "-u", USER, "--", *command]


@contextmanager
def server() -> Iterator[str | None]:
    """A running server; yields its admin URL (database `postgres`), or None without PostgreSQL."""
    bin_dir = binaries()
    if bin_dir is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="playground-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        _as_user(["true"])  # the user exists
        shutil.chown(root, USER)
        shutil.chown(sockets, USER)
    port = free_port()
    user = USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        _as_user([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def database_for(request, monkeypatch) -> Iterator[str]:  # noqa: ANN001 - pytest's request and monkeypatch
    """For a fixture parametrized "sqlite" / "postgresql": point the app at that database for one
    test (a fresh PostgreSQL database through PLAYGROUND_DATABASE_URL, which spawned processes
    inherit) and close every pooled connection around it."""
    from pipelines import config
    from pipelines.store import db

    if request.param == "postgresql":
        admin = request.getfixturevalue("postgres_admin_url")
        monkeypatch.setenv("PLAYGROUND_DATABASE_URL", fresh_database(admin))
        config.reset_settings()
    db.dispose_all()
    try:
        yield request.param
    finally:
        db.dispose_all()
