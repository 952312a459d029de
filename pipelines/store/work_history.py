"""A signed-in person's recent work per tab, on the server: what their browser keeps (playground.history),
so a second device, or the same one after its storage was cleared, shows it too.

Only for signed-in people (a name the app's sign-in vouches for); anonymous visitors' work stays in their
own browser. Bounded like the browser's copy: `MAX_BYTES` per person and tab (8 entries of at most 64 KB).
*Clear history* on one device must not be undone by another device that still holds the entries in its
storage and sends them back with its next result: the moment of the clearing is kept (`Kept.cleared_at`)
and entries made before it are not taken back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pipelines.store.db import session
from pipelines.store.tables import WorkHistoryRow

MAX_BYTES = 9 * 64 * 1024
MAX_NAME = 128  # the table's key column; a longer name keeps its work in its browser only


@dataclass
class Kept:
    """What the server holds for one person and tab."""

    entries: list[dict[str, Any]] = field(default_factory=list)  # newest first
    cleared_at: float = 0.0  # when they last cleared this history (0: never)


def load(user: str, tab: str) -> Kept:
    """The entries kept for `user` in `tab` and when they last cleared it."""
    if len(user) > MAX_NAME:
        return Kept()
    with session() as s:
        row = s.get(WorkHistoryRow, (user, tab))
        if row is None:
            return Kept()
        text, cleared_at = row.entries, float(row.cleared_at or 0.0)
    try:
        found = json.loads(text)
    except ValueError:
        found = []
    entries = [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []
    return Kept(entries, cleared_at)


def save(user: str, tab: str, entries: list[dict[str, Any]]) -> None:
    """Keep `entries` (newest first) for `user` in `tab`. The oldest go first when they would take more
    than MAX_BYTES."""
    kept = list(entries)
    text = json.dumps(kept, ensure_ascii=False)
    while kept and len(text.encode()) > MAX_BYTES:
        kept.pop()
        text = json.dumps(kept, ensure_ascii=False)
    _write(user, tab, text, cleared=False)


def forget(user: str, tab: str) -> None:
    """Clear `user`'s history in `tab`, here and, as their other devices next write, there too."""
    _write(user, tab, "[]", cleared=True)


def _write(user: str, tab: str, text: str, *, cleared: bool) -> None:
    if len(user) > MAX_NAME:
        return
    now = time.time()
    with session() as s:
        row = s.get(WorkHistoryRow, (user, tab))
        if row is None:
            row = WorkHistoryRow(user=user, tab=tab, entries=text, updated_at=now, cleared_at=0.0)
            s.add(row)
        row.entries, row.updated_at = text, now
        if cleared:
            row.cleared_at = now
