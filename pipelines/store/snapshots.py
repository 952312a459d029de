"""Consistent copies of the SQLite database, kept where they outlive the machine, and restored from.

On a Hugging Face Space the local disk is wiped at every restart, and a mounted bucket has no file
locking and may lose unflushed writes, so SQLite cannot live there. It lives on local disk; this
module copies it out with SQLite's online backup API (a consistent copy while the app writes, not
a file copy that could catch half a transaction) and puts the copy in a store:

- a directory (`PLAYGROUND_BACKUP_DIR`, e.g. a mounted bucket): `snapshots/<stamp>.db` with
  `<stamp>.json` beside it (SHA-256, size, schema revision, counts), then `latest.json`, each
  written under a temporary name and renamed, so a snapshot killed half-way leaves the previous
  one as the latest; the newest `keep` are kept;
- a Hub dataset repository (`PLAYGROUND_BACKUP_REPO`): `database.db`, `latest.json` and the
  exports in one commit (all or nothing; the repository's history keeps older copies).

Restoring takes the newest snapshot whose bytes match its manifest and pass `integrity_check`,
falling back to older ones. This module knows files and SQLite only; what goes into a backup
besides the database (the trl exports) is `pipelines.labels.backup`'s.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipelines.config import Settings
from pipelines.errors import PlaygroundError
from pipelines.store.files import write_atomic

log = logging.getLogger(__name__)

LATEST = "latest.json"
HUB_DATABASE = "database.db"


class SnapshotError(PlaygroundError, RuntimeError):
    """A snapshot cannot be taken, stored or restored; the message says why."""


@dataclass
class Manifest:
    """What a snapshot holds and how to check it."""

    path: str  # within the store
    sha256: str
    size: int  # bytes
    created: float
    revision: str | None = None  # the schema revision of the copied database
    counts: dict[str, int] = field(default_factory=dict)  # rows per table
    host: str = field(default_factory=socket.gethostname)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        data = json.loads(text)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with Path(path).open("rb+") as handle:
        os.fsync(handle.fileno())


def check_database(path: Path) -> dict[str, Any]:
    """A copy's integrity (SQLite's own check) and what it holds; SnapshotError when it is damaged."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            counts = {t: connection.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
            revision = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise SnapshotError(f"{Path(path).name} is not a readable SQLite database: {error}") from error
    if verdict != "ok":
        raise SnapshotError(f"{Path(path).name} fails SQLite's integrity check: {verdict}")
    counts.pop("alembic_version", None)
    return {"revision": revision, "counts": counts}


def copy_consistent(source: Path, target: Path) -> Manifest:
    """A consistent copy of a live database (the online backup API: one transaction's view, while
    other connections go on writing), as one self-contained file, checked and flushed."""
    target.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # the copy is one file, without -wal beside it
    finally:
        dst.close()
        src.close()
    _fsync(target)
    found = check_database(target)
    return Manifest(
        path=target.name,
        sha256=sha256_of(target),
        size=target.stat().st_size,
        created=time.time(),
        revision=found["revision"],
        counts=found["counts"],
    )


def is_empty(database: Path) -> bool:
    """No database yet, or one without a single row in any table (a fresh start).

    Every process asks this when it opens the database, so it looks for one row per table rather
    than counting them or checking the whole file."""
    if not database.exists() or database.stat().st_size == 0:
        return True
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        try:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return not any(
                connection.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables if t != "alembic_version"
            )
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return False  # damaged is not empty: never overwrite it silently


class Store(Protocol):
    """Where snapshots live: a directory or a Hub dataset repository."""

    def describe(self) -> str: ...

    def put(self, snapshot: Path, manifest: Manifest, extras: dict[str, Path]) -> Manifest: ...

    def manifests(self) -> list[Manifest]: ...

    def fetch(self, manifest: Manifest, target: Path) -> None: ...


_WRITER = re.compile(r"-(?P<pid>\d+)(?:\.db\.partial|-\d+)$")  # `.STAMP-PID.db.partial`, `.tmp-NAME-PID-THREAD`


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class DirectoryStore:
    """Snapshots in a directory: a mounted bucket, a network share, another disk."""

    def __init__(self, root: Path, keep: int = 10) -> None:
        self.root = Path(root)
        self.keep = max(1, keep)

    def describe(self) -> str:
        return str(self.root)

    def put(self, snapshot: Path, manifest: Manifest, extras: dict[str, Path]) -> Manifest:
        folder = self.root / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(manifest.created)) + f"-{time.time_ns() % 10**9:09d}"
        final = folder / f"{stamp}.db"
        partial = folder / f".{stamp}-{os.getpid()}.db.partial"
        self.sweep()
        shutil.copyfile(snapshot, partial)
        _fsync(partial)
        if sha256_of(partial) != manifest.sha256:
            partial.unlink(missing_ok=True)
            raise SnapshotError(f"the copy written to {folder} does not match the snapshot (a faulty mount?)")
        os.replace(partial, final)
        stored = Manifest(**{**asdict(manifest), "path": f"snapshots/{final.name}"})
        write_atomic(folder / f"{stamp}.json", stored.to_json())
        for name, local in extras.items():  # the exports: readable copies beside the database
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, Path(local).read_bytes())
        write_atomic(self.root / LATEST, stored.to_json())  # last: until here, the previous one is the latest
        self._prune(folder)
        return stored

    def sweep(self) -> list[Path]:
        """Remove what writers killed half-way left behind: a snapshot's `.partial` copy and the
        temporary files of `write_atomic`, each named with its writer's process id -- removed once
        that process is gone (or, written by another host's process, after an hour)."""
        removed = []
        for folder in (self.root, self.root / "snapshots", self.root / "exports"):
            if not folder.is_dir():
                continue
            for leftover in [*folder.glob(".*.partial"), *folder.glob(".tmp-*")]:
                match = _WRITER.search(leftover.name)
                try:
                    old = time.time() - leftover.stat().st_mtime > 3600
                except OSError:
                    continue
                if old or (match and not process_alive(int(match["pid"]))):
                    leftover.unlink(missing_ok=True)
                    removed.append(leftover)
        return removed

    def _prune(self, folder: Path) -> None:
        for old in sorted(folder.glob("*.db"))[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)

    def manifests(self) -> list[Manifest]:
        """Newest first: `latest.json`'s, then every other complete one (to fall back on)."""
        found: list[Manifest] = []
        latest = self.root / LATEST
        if latest.is_file():
            try:
                found.append(Manifest.from_json(latest.read_text()))
            except (ValueError, TypeError) as error:
                log.warning("backup: %s is unreadable (%s); looking at older snapshots", latest, error)
        for path in sorted((self.root / "snapshots").glob("*.json"), reverse=True):
            try:
                manifest = Manifest.from_json(path.read_text())
            except (ValueError, TypeError, OSError):
                continue
            if all(m.path != manifest.path for m in found):
                found.append(manifest)
        return found

    def fetch(self, manifest: Manifest, target: Path) -> None:
        source = self.root / manifest.path
        if not source.is_file():
            raise SnapshotError(f"{manifest.path} is missing from {self.root}")
        shutil.copyfile(source, target)


class HubStore:
    """Snapshots in a Hub dataset repository (private when it is created here)."""

    def __init__(self, repo: str, token: str | None = None, endpoint: str | None = None) -> None:
        from huggingface_hub import HfApi

        self.repo = repo
        # HF_ENDPOINT (a mirror, a private Hub) read now, not when huggingface_hub was first imported
        self.api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
        self._created = False

    def describe(self) -> str:
        return f"the Hub dataset {self.repo}"

    def put(self, snapshot: Path, manifest: Manifest, extras: dict[str, Path]) -> Manifest:
        from huggingface_hub import CommitOperationAdd

        if not self._created:
            self.api.create_repo(self.repo, repo_type="dataset", private=True, exist_ok=True)
            self._created = True
        stored = Manifest(**{**asdict(manifest), "path": HUB_DATABASE})
        operations = [
            CommitOperationAdd(path_in_repo=HUB_DATABASE, path_or_fileobj=str(snapshot)),
            *(CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(local)) for name, local in extras.items()),
            CommitOperationAdd(path_in_repo=LATEST, path_or_fileobj=stored.to_json().encode()),
        ]
        self.api.create_commit(
            self.repo,
            operations=operations,
            repo_type="dataset",
            commit_message=f"playground snapshot: {sum(manifest.counts.values())} rows, schema {manifest.revision}",
        )
        return stored

    def manifests(self) -> list[Manifest]:
        from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

        with tempfile.TemporaryDirectory(prefix="playground-hub-") as scratch:
            try:
                local = self._download(LATEST, scratch)
            except (RemoteEntryNotFoundError, RepositoryNotFoundError):  # the Hub answered: nothing there yet
                return []  # (any other failure, "could not reach" included, is raised: it is not "empty")
            return [Manifest.from_json(Path(local).read_text())]

    def fetch(self, manifest: Manifest, target: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="playground-hub-") as scratch:
            shutil.copyfile(self._download(manifest.path, scratch), target)

    def _download(self, path: str, scratch: str) -> str:
        """A file of the repository's newest commit, never from a cache (`scratch` is a new, empty
        directory: a restart's view must be current)."""
        return self.api.hf_hub_download(self.repo, path, repo_type="dataset", cache_dir=scratch)


def restore_latest(store: Store, database: Path) -> Manifest | None:
    """Put the newest good snapshot in place of `database` (which must not be open); None when the
    store has none. A snapshot whose bytes differ from its manifest, or that SQLite finds damaged,
    is skipped for the one before it."""
    database.parent.mkdir(parents=True, exist_ok=True)
    partial = database.with_name(f".{database.name}.restoring")
    for manifest in store.manifests():
        try:
            store.fetch(manifest, partial)
            if sha256_of(partial) != manifest.sha256:
                raise SnapshotError(f"{manifest.path} does not match its manifest (incomplete or altered)")
            check_database(partial)
        except (SnapshotError, OSError) as error:
            log.warning("backup: skipping snapshot %s of %s: %s", manifest.path, store.describe(), error)
            partial.unlink(missing_ok=True)
            continue
        for stale in (database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
            stale.unlink(missing_ok=True)
        _fsync(partial)
        os.replace(partial, database)
        return manifest
    return None


def stores(settings: Settings) -> list[Store]:
    """The stores a deployment configured (none: backups are off)."""
    found: list[Store] = []
    if settings.backup_dir is not None:
        found.append(DirectoryStore(settings.backup_dir, keep=settings.backup_keep))
    if settings.backup_repo:
        found.append(HubStore(settings.backup_repo))
    return found


# What this process restored when it opened the database (the Dataset tab says so), if anything.
restored_at_start: tuple[Manifest, str] | None = None
# Stores whose snapshots could not be read when an empty database was opened (store -> error). Backups
# skip them: the database may be empty only because the restore failed, and sending it would make an
# empty database their latest snapshot.
unreadable_at_start: dict[str, str] = {}


def restore_if_empty(settings: Settings, database: Path) -> Manifest | None:
    """On start, before the database is opened: when it is missing or empty and backups are
    configured, bring back the newest good snapshot (a Space after a restart). One process restores;
    the others (job workers, a CLI started at the same moment) wait for it and find it done."""
    configured = stores(settings)
    if not configured:
        return None
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f".{database.name}.restore-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_empty(database):
            return None
        for store in configured:
            try:
                restored = restore_latest(store, database)
            except Exception as error:  # noqa: BLE001 - an unreachable store must not stop the app starting
                log.error("backup: could not read snapshots from %s: %s", store.describe(), error)
                unreadable_at_start[store.describe()] = f"{type(error).__name__}: {error}"
                continue
            if restored is not None:
                global restored_at_start
                restored_at_start = (restored, store.describe())
                log.info(
                    "backup: restored %s from %s (%s rows, taken %s)",
                    restored.path,
                    store.describe(),
                    sum(restored.counts.values()),
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(restored.created)),
                )
                return restored
        return None
