"""Label drives: who labels what. A drive is a named set of items, each wanted from `overlap`
annotators, with gold items (a known answer) mixed in unannounced.

Serving is the hard part: ten annotators pressing Next at once must never push an item past its
`overlap` labels, nor get the same item twice. Each serve reads who holds what and writes the new
assignment as one step (`db.locked_session`: SQLite's write lock from BEGIN, or the drive's row
locked FOR UPDATE elsewhere). An item served but not labelled holds its place for `lease_seconds`,
then goes back to the pool -- a closed laptop does not stall the drive.

The order is "fill partly labelled items first": the next annotator joins an item others have
started before opening a new one, so items reach their `overlap` (and can be compared for
agreement) as early as possible, and a drive stopped half-way has complete items rather than
many items with one label. Gold items are served to every annotator once, at random with
probability `gold_rate`, and do not count towards the drive's progress: they measure annotators.
An annotator below the drive's gold threshold keeps labelling, but their labels stop filling
places: the item is served to others until it has `overlap` labels that count (as exports keep).

This module stores and serves; what the labels on gold items say about an annotator is
`preference_stats.gold_accuracy`.
"""

from __future__ import annotations

import html
import json
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pipelines import knobs
from pipelines.access import alias, is_anonymous
from pipelines.config import get_settings
from pipelines.errors import PlaygroundError
from pipelines.knobs import knob
from pipelines.store.db import locked_session, session
from pipelines.store.tables import PrefAssignment, PrefDrive, PrefDriveItem, PrefItem, PrefLabel, PrefResponse

MAX_OVERLAP = 20
MAX_NAME = 128
NAME = re.compile(r"\w[\w .\-]*")


class DriveError(PlaygroundError, ValueError):
    """A drive, its settings or a place in it cannot be had; the message says why."""


@dataclass(frozen=True)
class DriveSettings:
    """How a drive serves: defined once, for the CLI's flags and the Dataset tab's controls."""

    overlap: int = knob(
        1,
        help="annotators per item: the drive stops serving an item once it has this many labels "
        "(3 gives a reliability sample: agreement per item)",
        label="Annotators per item (overlap)",
        low=1,
        high=MAX_OVERLAP,
        step=1,
    )
    gold_threshold: float = knob(
        0.0,
        help="labels from annotators whose accuracy on gold items is below this are left out of exports "
        "(0: keep everyone; annotators with no gold answered yet are kept)",
        label="Gold accuracy needed",
        low=0.0,
        high=1.0,
        step=0.05,
    )
    gold_rate: float = knob(
        0.1,
        help="the chance that the next item served is a gold check (each annotator sees each gold item once)",
        label="Share of gold checks",
        low=0.0,
        high=0.5,
        step=0.05,
    )
    lease_minutes: float = knob(
        30.0,
        help="how long an item served but not labelled keeps its place before it is offered to others",
        label="Hold a served item (minutes)",
        low=1.0,
        high=10_080.0,
        slider=False,
    )
    signed_in_only: bool = knob(
        False,
        help="only signed-in annotators may label this drive, even where anonymous labelling is open "
        "(PLAYGROUND_ANONYMOUS_LABELS): for overlap > 1, where one person posing as several visitors could "
        "supply several of an item's labels",
        label="Signed-in annotators only",
    )

    def __post_init__(self) -> None:
        knobs.check(self)


@dataclass(frozen=True)
class Drive:
    name: str
    settings: DriveSettings
    created_at: float
    created_by: str | None

    @property
    def overlap(self) -> int:
        return self.settings.overlap

    @property
    def gold_threshold(self) -> float:
        return self.settings.gold_threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **asdict(self.settings),
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class GoldAnswer:
    """The known answer of a gold item, as a vote: a choice and its groups of positions, best first."""

    choice: str
    ranking: list[list[int]]

    def matches(self, choice: str, ranking: Sequence[Sequence[int]]) -> bool:
        """Whether a vote gives this answer. Tie and both-bad order nothing, so the choice itself
        must match; otherwise the order must (a three-way ranking may say "B > A = C")."""
        if self.choice in ("tie", "both_bad", "up", "down") or choice in ("tie", "both_bad", "up", "down"):
            return choice == self.choice
        return [sorted(group) for group in ranking] == [sorted(group) for group in self.ranking]


def _view(row: PrefDrive) -> Drive:
    settings = DriveSettings(
        row.overlap, row.gold_threshold, row.gold_rate, row.lease_seconds / 60, bool(row.signed_in_only)
    )
    return Drive(row.name, settings, row.created_at, row.created_by)


def save(name: str, settings: DriveSettings | None = None, *, created_by: str | None = None) -> tuple[Drive, bool]:
    """Create a drive, or change an existing one's settings (a raised overlap reopens complete
    items). Returns (the drive, whether it is new)."""
    settings = settings or DriveSettings()
    name = (name or "").strip()
    if not name:
        raise DriveError("name the drive")
    if len(name) > MAX_NAME:
        raise DriveError(f"the drive name is longer than {MAX_NAME} characters")
    if not NAME.fullmatch(name):  # it is shown in pickers, tables and file names of exports
        raise DriveError(
            f"the drive name {name[:80]!r} may hold letters, digits, spaces and . _ - only, and must start with a letter or digit"
        )
    with session() as s:
        row = s.get(PrefDrive, name)
        created = row is None
        if row is None:
            row = PrefDrive(name=name, created_at=time.time(), created_by=created_by)
            s.add(row)
        row.overlap, row.gold_threshold = settings.overlap, settings.gold_threshold
        row.gold_rate, row.lease_seconds = settings.gold_rate, settings.lease_minutes * 60
        row.signed_in_only = settings.signed_in_only
        s.flush()
        return _view(row), created


def get(name: str) -> Drive:
    with session() as s:
        row = s.get(PrefDrive, name or "")
        if row is None:
            known = ", ".join(names()[:10]) or "none yet"
            raise DriveError(f"no label drive {name[:80]!r} (drives: {known})")
        return _view(row)


def names() -> list[str]:
    with session() as s:
        return list(s.scalars(select(PrefDrive.name).order_by(PrefDrive.created_at)))


def all_drives() -> list[Drive]:
    with session() as s:
        return [_view(row) for row in s.scalars(select(PrefDrive).order_by(PrefDrive.created_at))]


def add_items(name: str, item_ids: Sequence[str], gold: dict[str, GoldAnswer] | None = None) -> int:
    """Put stored items in a drive (each item belongs to one drive at most). Returns how many are new."""
    get(name)
    gold = gold or {}
    added = 0
    with session() as s:
        for item_id in dict.fromkeys(item_ids):
            if s.get(PrefItem, item_id) is None:
                raise DriveError(f"no item {item_id[:80]!r}")
            responses = s.scalar(select(func.count()).select_from(PrefResponse).where(PrefResponse.item_id == item_id))
            if (responses or 0) < 2:
                raise DriveError(
                    f"item {item_id[:80]} has {responses} response: a drive item needs 2 or more to compare"
                )
            row = s.get(PrefDriveItem, item_id)
            if row is not None and row.drive != name:
                raise DriveError(f"item {item_id} is already in the drive {row.drive!r}")
            if row is None:
                row = PrefDriveItem(item_id=item_id, drive=name, added_at=time.time())
                s.add(row)
                added += 1
            if item_id in gold:
                row.gold = json.dumps(asdict(gold[item_id]))
    return added


def set_gold(item_id: str, answer: GoldAnswer | None) -> str:
    """Mark a drive's item as gold with its known answer (None: an ordinary item again). Returns the drive."""
    with session() as s:
        row = s.get(PrefDriveItem, item_id)
        if row is None:
            raise DriveError(f"item {item_id[:80]!r} is in no drive: add it to one first")
        row.gold = None if answer is None else json.dumps(asdict(answer))
        return row.drive


def drive_of(item_id: str) -> str | None:
    with session() as s:
        return s.scalar(select(PrefDriveItem.drive).where(PrefDriveItem.item_id == item_id))


def membership() -> dict[str, str]:
    """Every drive item: item id -> drive."""
    with session() as s:
        return dict(s.execute(select(PrefDriveItem.item_id, PrefDriveItem.drive)).tuples().all())


def gold_answers(name: str | None = None) -> dict[str, GoldAnswer]:
    """The known answers: item id -> answer (of one drive, or of all)."""
    query = select(PrefDriveItem.item_id, PrefDriveItem.gold).where(PrefDriveItem.gold.is_not(None))
    if name is not None:
        query = query.where(PrefDriveItem.drive == name)
    with session() as s:
        return {item_id: GoldAnswer(**json.loads(raw)) for item_id, raw in s.execute(query).tuples() if raw}


def forget_item(s: Session, item_id: str) -> None:
    """Drop an item's drive membership and assignments (the item is being deleted)."""
    s.execute(delete(PrefAssignment).where(PrefAssignment.item_id == item_id))
    s.execute(delete(PrefDriveItem).where(PrefDriveItem.item_id == item_id))


# --- who holds what ----------------------------------------------------------------------------


@dataclass
class _State:
    """A drive as serving sees it: its items, who labelled each, who holds each now."""

    drive: PrefDrive
    gold: set[str]
    regular: list[str]
    labelled: dict[str, set[str]]  # item -> annotators with a label
    held: dict[str, set[str]]  # item -> annotators with a live, unlabelled assignment
    served: dict[str, set[str]]  # annotator -> items ever served to them
    clients: dict[str, dict[str, str]]  # item -> anonymous annotator -> their address key (labelled or held)
    failing: set[str]  # annotators below the drive's gold threshold: their labels do not count

    def counted(self, item_id: str) -> set[str]:
        """The annotators whose labels count toward the item's `overlap` (exports keep the same ones)."""
        return self.labelled[item_id] - self.failing

    def places_taken(self, item_id: str, besides: str | None = None) -> int:
        return len((self.counted(item_id) | self.held[item_id]) - {besides})

    def same_network(self, item_id: str, annotator: str, client: str | None) -> bool:
        """Whether another anonymous visitor from this address already labels the item (one person, two ids)."""
        return bool(client) and any(key == client for who, key in self.clients[item_id].items() if who != annotator)

    def open_for(self, annotator: str, client: str | None = None) -> list[str]:
        """Regular items this annotator could be given now."""
        mine, anonymous = self.served[annotator], is_anonymous(annotator)
        return [
            i
            for i in self.regular
            if i not in mine
            and annotator not in self.labelled[i]
            and self.places_taken(i) < self.drive.overlap
            and not (anonymous and self.same_network(i, annotator, client))
        ]

    def gold_for(self, annotator: str) -> list[str]:
        mine = self.served[annotator]
        return [i for i in sorted(self.gold) if i not in mine and annotator not in self.labelled[i]]


def _state(s: Session, drive: PrefDrive, now: float) -> _State:
    members = s.execute(
        select(PrefDriveItem.item_id, PrefDriveItem.gold)
        .where(PrefDriveItem.drive == drive.name)
        .order_by(PrefDriveItem.added_at, PrefDriveItem.item_id)
    ).all()
    in_drive = select(PrefDriveItem.item_id).where(PrefDriveItem.drive == drive.name)
    labelled: dict[str, set[str]] = defaultdict(set)
    for item_id, annotator in s.execute(
        select(PrefLabel.item_id, PrefLabel.annotator).where(PrefLabel.item_id.in_(in_drive))
    ):
        labelled[item_id].add(annotator)
    held: dict[str, set[str]] = defaultdict(set)
    served: dict[str, set[str]] = defaultdict(set)
    clients: dict[str, dict[str, str]] = defaultdict(dict)
    for item_id, annotator, served_at, client in s.execute(
        select(PrefAssignment.item_id, PrefAssignment.annotator, PrefAssignment.served_at, PrefAssignment.client).where(
            PrefAssignment.drive == drive.name
        )
    ):
        served[annotator].add(item_id)
        live = served_at >= now - drive.lease_seconds and annotator not in labelled[item_id]
        if live:
            held[item_id].add(annotator)
        if client and is_anonymous(annotator) and (live or annotator in labelled[item_id]):
            clients[item_id][annotator] = client
    return _State(
        drive=drive,
        gold={item_id for item_id, gold in members if gold},
        regular=[item_id for item_id, gold in members if not gold],
        labelled=labelled,
        held=held,
        served=served,
        clients=clients,
        failing=_failing(s, drive.gold_threshold),
    )


def gold_record(votes: Iterable[tuple[str, GoldAnswer, str, Sequence[Sequence[int]]]]) -> dict[str, dict[str, Any]]:
    """Each annotator's record on gold items from (annotator, known answer, choice, ranking) votes:
    {name: {"gold_answered", "gold_correct", "gold_accuracy"}}. Annotators with no gold answered
    are absent: their accuracy is unknown, not zero. The one rule for exports, stats and serving."""
    answered: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for annotator, answer, choice, ranking in votes:
        answered[annotator] += 1
        correct[annotator] += answer.matches(choice, ranking)
    return {
        name: {"gold_answered": n, "gold_correct": correct[name], "gold_accuracy": correct[name] / n}
        for name, n in answered.items()
    }


def _failing(s: Session, threshold: float) -> set[str]:
    """Annotators whose accuracy on gold items is below `threshold`, measured as exports measure it
    (every drive's gold items; an annotator with none answered yet is kept). Their labels stop
    counting toward an item's overlap the moment they fall below it, so the item is served again."""
    if threshold <= 0:
        return set()
    rows = s.execute(
        select(PrefLabel.annotator, PrefLabel.choice, PrefLabel.ranking, PrefDriveItem.gold)
        .join(PrefDriveItem, PrefDriveItem.item_id == PrefLabel.item_id)
        .where(PrefDriveItem.gold.is_not(None))
    )
    votes = (  # as gold_answers: an empty mark is no answer
        (who, GoldAnswer(**json.loads(raw)), choice, json.loads(ranking)) for who, choice, ranking, raw in rows if raw
    )
    return {who for who, record in gold_record(votes).items() if record["gold_accuracy"] < threshold}


def _locked_drive(s: Session, name: str) -> PrefDrive:
    row = s.scalar(select(PrefDrive).where(PrefDrive.name == name).with_for_update())
    if row is None:
        raise DriveError(f"no label drive {name[:80]!r}")
    return row


def _check_anonymous(s: Session, drive: PrefDrive, annotator: str, client: str | None, now: float) -> None:
    """The caps that keep one person from posing as many anonymous visitors (issue 35): a drive closed
    to them, the items held from one address at once, and new anonymous ids per address per hour."""
    if drive.signed_in_only:
        raise DriveError(f"the drive {drive.name!r} is for signed-in annotators: sign in to label it")
    if not client:
        return
    limits = get_settings()
    anonymous_here = (PrefAssignment.client == client) & PrefAssignment.annotator.startswith("anon:")
    holds = (
        s.scalar(  # their live holds: served within the lease, not labelled yet
            select(func.count())
            .select_from(PrefAssignment)
            .outerjoin(
                PrefLabel,
                (PrefLabel.item_id == PrefAssignment.item_id) & (PrefLabel.annotator == PrefAssignment.annotator),
            )
            .join(PrefDrive, PrefDrive.name == PrefAssignment.drive)
            .where(
                anonymous_here,
                PrefAssignment.annotator != annotator,
                PrefLabel.item_id.is_(None),
                PrefAssignment.served_at >= now - PrefDrive.lease_seconds,
            )
        )
        or 0
    )
    if holds >= limits.anon_holds_per_address:
        raise DriveError(
            f"{holds} items are already held by visitors from your network, the most it may hold at once: "
            "label those, or wait for their holds to end (or sign in)"
        )
    known = s.scalar(select(func.count()).select_from(PrefAssignment).where(PrefAssignment.annotator == annotator))
    if known:
        return
    firsts = (
        select(PrefAssignment.annotator)
        .where(anonymous_here)
        .group_by(PrefAssignment.annotator)
        .having(func.min(PrefAssignment.served_at) >= now - 3600)
        .subquery()
    )
    newcomers = s.scalar(select(func.count()).select_from(firsts)) or 0
    if newcomers >= limits.anon_visitors_per_hour:
        raise DriveError(
            f"{newcomers} new anonymous annotators came from your network in the last hour, the most it may bring: "
            "sign in, or come back later"
        )


def take(
    name: str,
    annotator: str,
    *,
    client: str | None = None,
    rng: random.Random | None = None,
    now: float | None = None,
) -> str | None:
    """The item this annotator should label next in the drive, or None when there is none for them.

    An item served and not yet labelled comes back first (a reload does not take a new place), so
    an annotator holds one item at a time. `client` is the caller's address as a keyed hash: for
    anonymous annotators it caps holds and newcomers per address and keeps two of them from one
    address off the same item.
    """
    annotator = (annotator or "").strip()
    if not annotator:
        raise DriveError("say who you are (annotator name) to be given items")
    rng = rng or random.SystemRandom()
    now = time.time() if now is None else now
    with locked_session() as s:
        drive = _locked_drive(s, name)
        state = _state(s, drive, now)
        open_items = sorted(i for i, who in state.held.items() if annotator in who)
        if open_items:
            return open_items[0]
        if is_anonymous(annotator):
            _check_anonymous(s, drive, annotator, client, now)
        regular = state.open_for(annotator, client)
        gold = state.gold_for(annotator)
        if gold and (not regular or rng.random() < drive.gold_rate):
            chosen = rng.choice(gold)
        elif regular:
            fullest = max(state.places_taken(i) for i in regular)
            chosen = rng.choice([i for i in regular if state.places_taken(i) == fullest])
        else:
            return None
        s.add(PrefAssignment(drive=drive.name, item_id=chosen, annotator=annotator, served_at=now, client=client))
        return chosen


def held(name: str, annotator: str, *, now: float | None = None) -> str | None:
    """The item this annotator holds in the drive now (served, not labelled, lease live), or None.
    Reads only: a page that comes back after a reload shows it without taking anything new."""
    now = time.time() if now is None else now
    with session() as s:
        row = s.get(PrefDrive, name or "")
        if row is None:
            return None
        state = _state(s, row, now)
    mine = sorted(item_id for item_id, who in state.held.items() if annotator in who)
    return mine[0] if mine else None


def admit(s: Session, item_id: str, annotator: str, *, client: str | None = None, now: float | None = None) -> None:
    """Inside a `locked_session`, before a vote on a drive's item is stored: refuse it when the
    item's places are all taken by others (a lease that ran out, or an item never served to this
    annotator), or, for an anonymous annotator, when the drive is closed to them or another visitor
    from the same address labels the item; record the place otherwise. Gold items take every annotator."""
    member = s.get(PrefDriveItem, item_id)
    if member is None:
        return
    now = time.time() if now is None else now
    drive = _locked_drive(s, member.drive)
    state = _state(s, drive, now)
    if annotator in state.labelled[item_id]:
        return
    if is_anonymous(annotator):
        if drive.signed_in_only:
            raise DriveError(f"the drive {drive.name!r} is for signed-in annotators: sign in to label it")
        if state.same_network(item_id, annotator, client):
            raise DriveError("another visitor from your network already labels this item: press Next for another")
    if member.gold:
        return
    if state.places_taken(item_id, besides=annotator) >= drive.overlap:
        raise DriveError(
            f"this item of the drive {drive.name!r} already has its {drive.overlap} "
            f"label{'s' if drive.overlap > 1 else ''} (or annotators working on them): press Next for another"
        )
    if item_id not in state.served[annotator]:
        s.add(PrefAssignment(drive=drive.name, item_id=item_id, annotator=annotator, served_at=now, client=client))


def progress(
    name: str, annotator: str | None = None, *, others: bool = True, now: float | None = None
) -> dict[str, Any]:
    """How far the drive is, per annotator, and for `annotator`: done / assigned and what is left to them.

    The drive's labels count up to `overlap` per regular item, without those of annotators below the
    gold threshold; gold items are checks, not progress.
    `others=False` leaves the other annotators out (what an annotator is shown): only their count.
    """
    now = time.time() if now is None else now
    with session() as s:
        row = s.get(PrefDrive, name)
        if row is None:
            raise DriveError(f"no label drive {name[:80]!r}")
        state = _state(s, row, now)
        overlap = row.overlap
    counted = sum(min(overlap, len(state.counted(i))) for i in state.regular)
    needed = overlap * len(state.regular)
    people = sorted(
        {a for who in state.labelled.values() for a in who} | set(state.served),
        key=lambda a: a.lower(),
    )

    def person(who: str) -> dict[str, Any]:
        done = sum(1 for i in [*state.regular, *state.gold] if who in state.labelled[i])
        holding = sum(1 for who_holds in state.held.values() if who in who_holds)
        return {
            "name": who,
            "done": done,
            "assigned": done + holding,
            "open": holding,
            "available": len(state.open_for(who)) + len(state.gold_for(who)),
        }

    report: dict[str, Any] = {
        "drive": name,
        "overlap": overlap,
        "items": len(state.regular),
        "gold_items": len(state.gold),
        "labels": counted,
        "labels_needed": needed,
        "complete_items": sum(1 for i in state.regular if len(state.counted(i)) >= overlap),
        "share": counted / needed if needed else None,
        "annotator_count": len(people),
    }
    if others:
        report["annotators"] = [person(who) for who in people]
    if annotator:
        report["you"] = person(annotator.strip())
        if not others:  # an annotator's own view: an alias, like everyone else's
            report["you"]["name"] = alias(report["you"]["name"])
    return report


def describe(report: dict[str, Any]) -> str:
    """A progress report in two lines of Markdown, the annotator's first."""
    lines = []
    you = report.get("you")
    if you is not None:
        lines.append(
            f"**You:** {you['done']} done of {you['assigned']} assigned"
            + (f", {you['open']} open" if you["open"] else "")
            + f" · {you['available']} more available to you."
        )
    share = report["share"]
    lines.append(
        f"**Drive {html.escape(report['drive'])}:** {report['labels']} of {report['labels_needed']} labels"
        + (f" ({share:.0%})" if share is not None else "")
        + f" · {report['complete_items']} of {report['items']} items have their {report['overlap']} "
        + ("labels" if report["overlap"] > 1 else "label")
        + f" · {report['annotator_count']} annotators."
    )
    return "  \n".join(lines)
