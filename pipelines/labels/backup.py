"""Backups of the label store for a deployment whose disk does not survive a restart (a Space).

Every `PLAYGROUND_BACKUP_INTERVAL` seconds (when something changed) and when the app stops, a
consistent snapshot of the SQLite database (`pipelines.store.snapshots`) goes to each configured store,
with the labels exported in trl's format beside it (`exports/preferences.jsonl` as pairs,
`exports/unpaired.jsonl` for KTO-style rows) so they are usable without the playground. The
database itself is what a restart restores (`snapshots.restore_if_empty`, on open). PostgreSQL
deployments back up with the database's own tools; this is for SQLite.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import Settings, get_settings
from pipelines.labels import preference_data
from pipelines.store import db, snapshots

log = logging.getLogger(__name__)

EXPORTS = {"exports/preferences.jsonl": "jsonl", "exports/unpaired.jsonl": "unpaired"}


class BackupUnavailable(snapshots.SnapshotError):
    """Backups are not configured, or the database is not a SQLite file."""


@dataclass
class BackupResult:
    """One snapshot: where it went, what it holds, or why a store refused it."""

    sha256: str
    bytes: int
    revision: str | None
    counts: dict[str, int]
    created: float  # when the copy was taken
    stored: list[str] = field(default_factory=list)  # a store's description, per store that took it
    failed: dict[str, str] = field(default_factory=dict)  # store -> error
    unchanged: bool = False  # the same bytes as the last snapshot: nothing sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "bytes": self.bytes,
            "revision": self.revision,
            "labels": self.counts.get("pref_labels", 0),
            "items": self.counts.get("pref_items", 0),
            "counts": self.counts,
            "stored": self.stored,
            "failed": self.failed,
            "unchanged": self.unchanged,
        }


def database_file(settings: Settings) -> Path:
    """The SQLite file that backups copy and restores fill; BackupUnavailable for other databases."""
    file = db.sqlite_file(db.database_url(settings))
    if file is None:
        raise BackupUnavailable(
            "backups copy a SQLite database; PLAYGROUND_DATABASE_URL points elsewhere (use its own backups)"
        )
    return file


def configured_stores(settings: Settings) -> list[snapshots.Store]:
    """The configured stores; BackupUnavailable, saying what to set, when there are none."""
    stores = snapshots.stores(settings)
    if not stores:
        raise BackupUnavailable("no backup is configured: set PLAYGROUND_BACKUP_DIR or PLAYGROUND_BACKUP_REPO")
    return stores


def snapshot(
    settings: Settings | None = None, *, previous: str | None = None, stores: list[snapshots.Store] | None = None
) -> BackupResult:
    """Take one snapshot now and put it in every configured store (or `stores`: the app's thread
    keeps its own, so a Hub repository is created once, not at every snapshot). `previous`: the
    SHA-256 of the last one sent; equal bytes are not sent again."""
    settings = settings or get_settings()
    stores = stores if stores is not None else configured_stores(settings)
    source = database_file(settings)
    db.engine(settings)  # the database exists, at the current schema
    sweep_scratch(settings)
    with tempfile.TemporaryDirectory(prefix=f"playground-backup-{os.getpid()}-", dir=settings.data_dir) as scratch:
        copy = Path(scratch) / "snapshot.db"
        manifest = snapshots.copy_consistent(source, copy)
        result = BackupResult(manifest.sha256, manifest.size, manifest.revision, manifest.counts, manifest.created)
        if manifest.sha256 == previous:
            result.unchanged = True
            return result
        extras = {}
        for name, fmt in EXPORTS.items():
            extras[name] = Path(scratch) / Path(name).name
            preference_data.export(extras[name], fmt)
        for store in stores:
            if store.describe() in snapshots.unreadable_at_start:
                result.failed[store.describe()] = (
                    "not sent: its snapshots could not be read when this database was opened empty "
                    f"({snapshots.unreadable_at_start[store.describe()]}), so sending it could make an empty "
                    "database the latest snapshot; restart the app once the store is reachable"
                )
                continue
            try:
                store.put(copy, manifest, extras)
                result.stored.append(store.describe())
            except Exception as error:  # noqa: BLE001 - one unreachable store must not stop the others
                log.error("backup: %s refused the snapshot: %s", store.describe(), error)
                result.failed[store.describe()] = f"{type(error).__name__}: {error}"
    return result


class Backups:
    """The app's periodic snapshots: a thread that wakes every interval, and one last snapshot on stop."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.stores = snapshots.stores(self.settings)
        self.last: BackupResult | None = None  # the last snapshot sent (an unchanged database sends none)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> Backups:
        self._thread = threading.Thread(target=self._loop, name="backups", daemon=True)
        self._thread.start()
        return self

    def run_once(self) -> BackupResult | None:
        with self._lock:  # the loop and the stop hook never snapshot at the same time
            try:
                result = snapshot(
                    self.settings,
                    previous=self.last.sha256 if self.last and not self.last.failed else None,
                    stores=self.stores,
                )
            except Exception as error:  # noqa: BLE001 - the next interval tries again
                log.error("backup: snapshot failed: %s", error)
                return None
            if not result.unchanged:
                log.info(
                    "backup: %s rows sent to %s", sum(result.counts.values()), ", ".join(result.stored) or "no store"
                )
            if not result.unchanged:  # `last` is the last snapshot sent, whatever was checked since
                self.last = result
            return result

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.backup_interval):
            self.run_once()

    def stop(self) -> BackupResult | None:
        """Stop the loop and take a last snapshot (what was labelled since the last interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.run_once()


_running: Backups | None = None


def sweep_scratch(settings: Settings) -> None:
    """Scratch directories of snapshots whose process was killed half-way (named with its pid)."""
    for folder in settings.data_dir.glob("playground-backup-*-*"):
        pid = folder.name.split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not snapshots.process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def start(settings: Settings | None = None) -> Backups | None:
    """Start periodic backups when they are configured and the database is SQLite (else None)."""
    global _running
    settings = settings or get_settings()
    if not snapshots.stores(settings):
        return None
    try:
        database_file(settings)
    except BackupUnavailable as error:
        log.warning("backup: %s", error)
        return None
    started = _running = Backups(settings).start()
    log.info("backup: every %g s to %s", settings.backup_interval, ", ".join(s.describe() for s in started.stores))
    return started


def status_line(settings: Settings | None = None) -> str | None:
    """One line for the operator (the Dataset tab): the last snapshot, or the warning that a Space's
    labels are not backed up at all; None where there is nothing to say."""
    settings = settings or get_settings()
    running = _running
    if running is not None:
        every = f"every {settings.backup_interval:g} s"
        if snapshots.restored_at_start is not None:
            manifest, store = snapshots.restored_at_start
            taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(manifest.created))
            every += (
                f"; at start, {manifest.counts.get('pref_labels', 0)} labels came back from {store} (taken {taken})"
            )
        last = running.last
        if last is None:
            return f"Backups: {every}; none taken yet."
        when = time.strftime("%H:%M:%S UTC", time.gmtime(last.created))
        labels = last.counts.get("pref_labels", 0)
        text = f"Backups: last snapshot at {when} ({labels} label{'' if labels == 1 else 's'}) to " + (
            ", ".join(last.stored) or "no store"
        )
        if last.failed:
            text += "; ⚠ " + "; ".join(f"{store} refused it: {why}" for store, why in last.failed.items())
        return f"{text}; {every}."
    on_space = bool(os.environ.get("SPACE_ID"))
    if on_space and not snapshots.stores(settings) and db.sqlite_file(db.database_url(settings)) is not None:
        return (
            "⚠ This Space keeps its labels on a disk that is wiped at every restart: set PLAYGROUND_BACKUP_REPO "
            "(with HF_TOKEN) or PLAYGROUND_DATABASE_URL (docs/deploy.md: A Space that keeps its labels)."
        )
    return None
