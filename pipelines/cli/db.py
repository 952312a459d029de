"""`python -m pipelines db status|upgrade|backup|restore`: the database's schema and its snapshots.

Every process upgrades the database when it opens it, so `upgrade` is only needed to do it at a
chosen moment (before rolling out replicas of a new version, say); `status` reads without changing.
`backup` takes a snapshot now (the app takes them every PLAYGROUND_BACKUP_INTERVAL seconds);
`restore` brings the newest one back into an empty database (the app does it on start).
"""

from __future__ import annotations

import argparse

from pipelines.cli.common import CommandFailed, UsageError, emit_json, needs_action
from pipelines.config import get_settings
from pipelines.store import db, snapshots


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("db", help=help_text)
    commands = parser.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(parser))
    status = commands.add_parser("status", help="the database's schema revision and this playground's newest")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=run_status)
    upgrade = commands.add_parser("upgrade", help="bring the database to the newest revision now")
    upgrade.add_argument("--json", action="store_true")
    upgrade.set_defaults(handler=run_upgrade)
    backup_now = commands.add_parser("backup", help="snapshot the SQLite database to PLAYGROUND_BACKUP_DIR / _REPO now")
    backup_now.add_argument("--json", action="store_true")
    backup_now.set_defaults(handler=run_backup)
    restore = commands.add_parser("restore", help="bring back the newest good snapshot (only into an empty database)")
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(handler=run_restore)
    parser.set_defaults(handler=needs_action("db", "status, upgrade, backup, restore"))


def _report(args: argparse.Namespace, **extra: object) -> int:
    state = db.schema_state()
    document = {
        "database": db.describe_url(),
        "revision": state.revision,
        "head": state.head,
        "up_to_date": state.up_to_date,
        "tables": state.tables,
        **extra,
    }
    if args.json:
        emit_json(document)
    else:
        for key, value in document.items():
            print(f"{key}: {value}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    return _report(args)


def run_upgrade(args: argparse.Namespace) -> int:
    before = db.schema_state().revision
    db.engine()
    return _report(args, previous_revision=before)


def run_backup(args: argparse.Namespace) -> int:
    from pipelines.labels import backup

    try:
        result = backup.snapshot()
    except backup.BackupUnavailable as error:
        raise UsageError(str(error)) from error
    if result.failed and not result.stored:
        raise CommandFailed("no store took the snapshot: " + "; ".join(f"{k}: {v}" for k, v in result.failed.items()))
    if args.json:
        emit_json(result.as_dict())
    else:
        print(
            f"snapshot of {result.bytes:,} bytes ({result.counts.get('pref_labels', 0)} labels) sent to "
            + ", ".join(result.stored)
        )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from pipelines.labels import backup

    settings = get_settings()
    try:
        backup.configured_stores(settings)
        file = backup.database_file(settings)
    except backup.BackupUnavailable as error:
        raise UsageError(str(error)) from error
    if not snapshots.is_empty(file):
        raise UsageError(f"{file} already holds data; restore only fills an empty database (move it aside first)")
    db.dispose_all()
    manifest = snapshots.restore_if_empty(settings, file)
    document = {
        "restored": manifest is not None,
        "database": str(file),
        "snapshot": None if manifest is None else manifest.path,
        "created": None if manifest is None else manifest.created,
        "counts": {} if manifest is None else manifest.counts,
    }
    if args.json:
        emit_json(document)
    elif manifest is None:
        print("no snapshot found: the database stays empty")
    else:
        print(f"restored {manifest.path} ({sum(manifest.counts.values())} rows) into {file}")
    return 0
