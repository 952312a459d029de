"""Workshops: a class run from the app (the shape of NDIF Workbench's workshops).

A lecturer creates a workshop: its lessons in order, the tabs students may use, what is pinned for
the class (adapter, sampling settings), an expiry and optionally a label drive. It gets a short
join code; a student joins with the code and a display name and gets a random student id (what
their browser keeps), then reports reaching a step, finishing it, and answering its check. The
lecturer sees students x steps, the funnel per step and the answers, and exports them as CSV.
Everything lives in the database (tables `workshops`, `workshop_students`, `workshop_events`), so
replicas on one PostgreSQL show the same class. Students never see each other: only the
lecturer's `status` lists names.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pipelines import knobs
from pipelines.engine.adapters import BASE_CHOICE
from pipelines.errors import InvalidParameter, PlaygroundError
from pipelines.knobs import knob
from pipelines.lessons import TABS, Lesson, load_lessons
from pipelines.lessons.checks import MAX_ANSWER_CHARS, CheckError, Expected, expected
from pipelines.store.db import session
from pipelines.store.files import write_atomic
from pipelines.store.tables import WorkshopEvent, WorkshopRow, WorkshopStudent

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud and typed from a slide
CODE_LENGTH = 6
NAME = re.compile(r"\w[\w .\-]{0,127}")
MAX_STUDENT_NAME = 64
EVENT_KINDS = ("reached", "done")
IDLE_SECONDS = 300  # a student with no step, check or answer for this long shows as idle to the lecturer
CSV_COLUMNS = ["student", "lesson", "step", "reached_at", "done_at", "answer", "correct", "attempts", "seconds"]


class WorkshopError(PlaygroundError, ValueError):
    """A workshop that does not exist, has ended, or a request it does not allow."""


@dataclass(frozen=True)
class WorkshopSpec:
    """A workshop's settings: the CLI's flags and the lecturer's form (`playground.workshop`)."""

    expires_hours: float = knob(
        24.0,
        help="hours until the join code stops working",
        label="Open for (hours)",
        low=0.1,
        high=24 * 60,
        slider=False,
    )
    reveal: bool = knob(
        False,
        help="students see the expected answer after they answer a check",
        label="Reveal answers",
    )

    def __post_init__(self) -> None:
        knobs.check(self)


@dataclass(frozen=True)
class Workshop:
    name: str
    code: str
    lessons: list[str]
    tabs: list[str]
    pinned: dict[str, Any] = field(default_factory=dict)
    drive: str | None = None
    reveal: bool = False
    expires_at: float = 0.0
    created_by: str | None = None

    @property
    def link(self) -> str:
        return f"/?workshop={self.code}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "link": self.link,
            "lessons": self.lessons,
            "tabs": self.tabs,
            "expires_at": self.expires_at,
            "pinned": self.pinned,
            "drive": self.drive,
            "reveal": self.reveal,
        }


def _view(row: WorkshopRow) -> Workshop:
    return Workshop(
        name=row.name,
        code=row.code,
        lessons=json.loads(row.lessons),
        tabs=json.loads(row.tabs),
        pinned=json.loads(row.pinned or "{}"),
        drive=row.drive,
        reveal=bool(row.reveal),
        expires_at=row.expires_at,
        created_by=row.created_by,
    )


def _lessons_by_name() -> dict[str, Lesson]:
    return {lesson.name: lesson for lesson in load_lessons()}


def create(
    name: str,
    lessons: list[str],
    *,
    tabs: list[str] | None = None,
    spec: WorkshopSpec | None = None,
    pinned: dict[str, Any] | None = None,
    drive: str | None = None,
    created_by: str | None = None,
    now: float | None = None,
) -> Workshop:
    """A new workshop with a fresh join code. Every tab its lessons' steps use must be allowed."""
    spec = spec or WorkshopSpec()
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise InvalidParameter(
            "name",
            "give the workshop a name: letters, digits, spaces, '.', '-' and '_', at most 128, "
            "starting with a letter or digit",
        )
    known = _lessons_by_name()
    unknown = [lesson for lesson in lessons if lesson not in known]
    if not lessons:
        raise InvalidParameter("lesson", "choose at least one lesson")
    if unknown:
        raise InvalidParameter("lesson", f"choose from {', '.join(known)}; unknown: {', '.join(unknown)}")
    allowed = list(dict.fromkeys(tabs)) if tabs is not None else list(TABS)  # [] allows none
    wrong = [tab for tab in allowed if tab not in TABS]
    if wrong:
        raise InvalidParameter("tabs", f"choose from {', '.join(TABS)}; unknown: {', '.join(wrong)}")
    needed = sorted({step.tab for lesson in lessons for step in known[lesson].steps} - set(allowed))
    if needed:
        raise InvalidParameter("tabs", f"the lessons' steps use {', '.join(needed)}: allow them too")
    pinned = _checked_pins(pinned or {})
    if drive:
        from pipelines.labels import drives

        drives.get(drive)  # DriveError when there is none
        if "preferences" not in allowed:
            raise InvalidParameter("tabs", "a label drive is labelled in the preferences tab: allow it too")
    now = time.time() if now is None else now
    for _ in range(20):  # a code already taken is drawn again
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        try:
            with session() as s:
                s.add(
                    WorkshopRow(
                        name=name,
                        code=code,
                        lessons=json.dumps(list(lessons)),
                        tabs=json.dumps(allowed),
                        pinned=json.dumps(pinned),
                        drive=drive or None,
                        reveal=spec.reveal,
                        created_at=now,
                        created_by=created_by,
                        expires_at=now + spec.expires_hours * 3600,
                    )
                )
            return get(name)
        except IntegrityError:
            if _exists(name):
                raise WorkshopError(f"a workshop named {name!r} exists already") from None
    raise WorkshopError("could not draw an unused join code; try again")


def _checked_pins(pinned: dict[str, Any]) -> dict[str, Any]:
    from pipelines.engine.sampling import SamplingParams

    unknown = set(pinned) - {"adapter", "sampling"}
    if unknown:
        raise InvalidParameter("pinned", f"only adapter and sampling can be pinned, not {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    if pinned.get("adapter"):
        out["adapter"] = str(pinned["adapter"])
    if pinned.get("sampling"):
        out["sampling"] = SamplingParams.from_dict(dict(pinned["sampling"])).to_dict()
    return out


def _exists(name: str) -> bool:
    with session() as s:
        return s.get(WorkshopRow, name) is not None


def get(name: str) -> Workshop:
    with session() as s:
        row = s.get(WorkshopRow, name)
        if row is None:
            raise WorkshopError(f"no workshop named {name[:80]!r}")
        return _view(row)


def names() -> list[str]:
    with session() as s:
        return list(s.scalars(select(WorkshopRow.name).order_by(WorkshopRow.created_at.desc())))


def by_code(code: str, *, now: float | None = None) -> Workshop:
    """The open workshop with this join code; refuses an unknown or ended one."""
    cleaned = (code or "").strip().upper()
    with session() as s:
        row = s.scalar(select(WorkshopRow).where(WorkshopRow.code == cleaned)) if cleaned else None
        if row is None:
            raise WorkshopError("no workshop has this join code: check it with your lecturer")
        workshop = _view(row)
    if (time.time() if now is None else now) > workshop.expires_at:
        raise WorkshopError(f"the workshop {workshop.name!r} has ended: its join code no longer works")
    return workshop


def pinned(code: str, *, now: float | None = None) -> dict[str, Any]:
    """What the open workshop of this code pins ({} when there is none, or it has ended: a step is
    then set up with its own settings only)."""
    try:
        return by_code(code, now=now).pinned
    except WorkshopError:
        return {}


def join(code: str, name: str, *, visitor: str | None = None, now: float | None = None) -> dict[str, Any]:
    """A student in the workshop: {"student", "workshop", "lessons", "tabs"}. A display name is
    unique within the workshop (two people cannot share one, nor take another's place). `visitor`:
    the joining browser as the database keeps it (`VisitorKeys.stored_id`); the tabs the workshop
    hides are then refused to that browser (`check_tab`)."""
    now = time.time() if now is None else now
    workshop = by_code(code, now=now)
    shown = " ".join((name or "").split())
    if not shown or len(shown) > MAX_STUDENT_NAME:
        raise InvalidParameter("name", f"a display name of 1 to {MAX_STUDENT_NAME} characters")
    student = secrets.token_hex(8)
    try:
        with session() as s:
            s.add(
                WorkshopStudent(
                    id=student, workshop=workshop.name, name=shown, joined_at=now, last_seen=now, visitor=visitor
                )
            )
    except IntegrityError:
        raise WorkshopError(f"someone in this workshop is already called {shown!r}: choose another name") from None
    return {"student": student, "workshop": workshop.name, "lessons": workshop.lessons, "tabs": workshop.tabs}


def member(code: str, student: str, *, visitor: str | None = None, now: float | None = None) -> bool:
    """Whether this student id belongs to the open workshop of this code (a page restoring itself
    asks). With `visitor`, the student is bound to that browser from now on: the page keeps the
    membership in its own storage, which can outlive the visitor cookie the tab check reads."""
    try:
        workshop = by_code(code, now=now)
    except WorkshopError:
        return False
    with session() as s:
        row = s.get(WorkshopStudent, (student or "").strip())
        if row is None or row.workshop != workshop.name:
            return False
        if visitor and row.visitor != visitor:
            row.visitor = visitor
        return True


def _student(s: Any, workshop: Workshop, student: str) -> WorkshopStudent:
    row = s.get(WorkshopStudent, (student or "").strip())
    if row is None or row.workshop != workshop.name:
        raise WorkshopError("this student has not joined the workshop: join it with its code first")
    return row


def _step(workshop: Workshop, lesson: str, step: int) -> Any:
    if lesson not in workshop.lessons:
        raise InvalidParameter("lesson", f"this workshop's lessons are {', '.join(workshop.lessons)}")
    steps = _lessons_by_name()[lesson].steps
    if not 1 <= int(step) <= len(steps):
        raise InvalidParameter("step", f"the lesson has steps 1 to {len(steps)}")
    return steps[int(step) - 1]


def allowed_tabs(visitor: str | None, *, now: float | None = None) -> tuple[str, list[str]] | None:
    """(workshop, its tabs) for a browser that joined an open workshop (the newest it joined), else
    None: a visitor outside every class may use every tab."""
    if not visitor:
        return None
    now = time.time() if now is None else now
    with session() as s:
        row = s.execute(
            select(WorkshopRow.name, WorkshopRow.tabs)
            .join(WorkshopStudent, WorkshopStudent.workshop == WorkshopRow.name)
            .where(WorkshopStudent.visitor == visitor, WorkshopRow.expires_at >= now)
            .order_by(WorkshopStudent.joined_at.desc())
            .limit(1)
        ).first()
    return (row.name, json.loads(row.tabs)) if row else None


def check_tab(visitor: str | None, tab: str, *, now: float | None = None) -> None:
    """Refuses a tab the visitor's workshop does not let its students use: the server's check, as
    the page only hides the tab."""
    found = allowed_tabs(visitor, now=now)
    if found is not None and tab not in found[1]:
        raise WorkshopError(f"your workshop {found[0]!r} does not use this tab: go back to its lesson")


def set_reveal(name: str, reveal: bool) -> Workshop:
    """Show (or hide again) the expected answer to the students' checks from now on: a lecturer
    reveals once the class has answered."""
    with session() as s:
        row = s.get(WorkshopRow, name)
        if row is None:
            raise WorkshopError(f"no workshop named {name[:80]!r}")
        row.reveal = bool(reveal)
    return get(name)


def record(code: str, student: str, lesson: str, step: int, kind: str, *, now: float | None = None) -> None:
    """A student reached a step, or marked it done."""
    if kind not in EVENT_KINDS:
        raise InvalidParameter("kind", f"one of {', '.join(EVENT_KINDS)}")
    now = time.time() if now is None else now
    workshop = by_code(code, now=now)
    _step(workshop, lesson, step)
    with session() as s:
        row = _student(s, workshop, student)
        row.last_seen = now
        s.add(WorkshopEvent(student=row.id, lesson=lesson, step=int(step), kind=kind, at=now))


_expected_cache: dict[tuple, Expected] = {}


def answer(
    code: str, student: str, lesson: str, step: int, given: str, *, handle: Any = None, now: float | None = None
) -> dict[str, Any]:
    """A student's answer to a step's check: {"correct": bool | None, "expected"?} (the expected
    answer only when the workshop reveals). Every attempt is kept; a step without a check records
    the answer with correct = None."""
    now = time.time() if now is None else now
    workshop = by_code(code, now=now)
    chosen = _step(workshop, lesson, step)
    given = str(given if given is not None else "").strip()
    if not given or len(given) > MAX_ANSWER_CHARS:
        raise InvalidParameter("answer", f"an answer of 1 to {MAX_ANSWER_CHARS} characters")
    with session() as s:
        _student(s, workshop, student)  # before any model work: an unknown student is refused at once
    right: bool | None = None
    target: Expected | None = None
    if chosen.check is not None:
        target = _expected_for(workshop, lesson, int(step), chosen.check, handle)
        try:
            right = target.accepts(given)
        except CheckError as error:
            raise InvalidParameter("answer", str(error)) from error
    with session() as s:  # an append: no write lock needed, as record()
        row = _student(s, workshop, student)
        row.last_seen = now
        s.add(
            WorkshopEvent(
                student=row.id, lesson=lesson, step=int(step), kind="answer", answer=given, correct=right, at=now
            )
        )
    result: dict[str, Any] = {"correct": right}
    if workshop.reveal and target is not None:
        result["expected"] = target.shown()
    return result


def _expected_for(workshop: Workshop, lesson: str, step: int, check: dict[str, Any], handle: Any) -> Expected:
    adapter = workshop.pinned.get("adapter")
    if "choices" in check:
        return expected(check, None)
    if handle is None:
        from pipelines.engine import models

        handle = models.get_handle()
    key = (id(handle.base_model), adapter, lesson, step, json.dumps(check, sort_keys=True))
    if key not in _expected_cache:  # computed once per model and adapter: a class answers the same check
        _expected_cache[key] = expected(check, handle, None if adapter in (None, "", BASE_CHOICE) else adapter)
    return _expected_cache[key]


@dataclass
class StepRecord:
    """One student at one step, folded from their events: the lecturer's grid, status and CSV read it."""

    reached_at: float
    last_at: float
    done_at: float | None = None
    answer: str | None = None  # the last answer: it is the one that counts
    correct: bool | None = None
    attempts: int = 0

    @property
    def seconds(self) -> float:
        """Time spent: from reaching the step to marking it done (or to the last thing done there)."""
        return round((self.done_at or self.last_at) - self.reached_at, 1)


def _class(workshop: Workshop) -> tuple[list[WorkshopStudent], dict[tuple[str, str, int], StepRecord]]:
    """The workshop's students and a record per (student id, lesson, step) they reached."""
    with session() as s:
        students = list(s.scalars(select(WorkshopStudent).where(WorkshopStudent.workshop == workshop.name)))
        ids = [row.id for row in students]
        events = list(s.scalars(select(WorkshopEvent).where(WorkshopEvent.student.in_(ids)))) if ids else []
    records: dict[tuple[str, str, int], StepRecord] = {}
    for event in sorted(events, key=lambda e: (e.at, e.id)):
        record = records.setdefault((event.student, event.lesson, event.step), StepRecord(event.at, event.at))
        record.last_at = event.at
        if event.kind == "done" and record.done_at is None:
            record.done_at = event.at
        elif event.kind == "answer":
            record.answer, record.correct, record.attempts = event.answer, event.correct, record.attempts + 1
    return sorted(students, key=lambda r: r.name.casefold()), records


def status(name: str, *, now: float | None = None) -> dict[str, Any]:
    """The lecturer's view: {"students": [...], "funnel": [...]} (the CLI's and API's contract), plus
    the answers' distribution per check, who has been idle, and the grid of students x steps."""
    now = time.time() if now is None else now
    workshop = get(name)
    students, records = _class(workshop)
    lessons = _lessons_by_name()
    steps = [(lesson, n, step) for lesson in workshop.lessons for n, step in enumerate(lessons[lesson].steps, 1)]
    funnel = []
    answers: dict[str, Counter[str]] = {}
    for lesson, number, step in steps:
        here = [r for (_, le, st), r in records.items() if (le, st) == (lesson, number)]
        answered = [r for r in here if r.attempts]
        funnel.append(
            {
                "lesson": lesson,
                "step": number,
                "title": step.title,
                "checked": step.check is not None,
                "reached": len(here),
                "done": sum(1 for r in here if r.done_at is not None),
                "checks_right": sum(1 for r in answered if r.correct),
                "checks_answered": len(answered),
            }
        )
        if step.check is not None:
            answers[f"{lesson} {number}"] = Counter(r.answer or "" for r in answered)
    people: list[dict[str, Any]] = []
    grid: list[dict[str, Any]] = []
    for row in students:
        mine = {(le, st): r for (who, le, st), r in records.items() if who == row.id}
        people.append(
            {
                "name": row.name,
                "steps_done": sum(1 for r in mine.values() if r.done_at is not None),
                "checks_right": sum(1 for r in mine.values() if r.correct),
                "checks_answered": sum(1 for r in mine.values() if r.correct is not None),
                "last_seen": row.last_seen,
                "idle_seconds": round(now - row.last_seen, 1),
            }
        )
        grid.append(
            {
                "name": row.name,
                "steps": [
                    {
                        "lesson": lesson,
                        "step": number,
                        "done": mine[(lesson, number)].done_at is not None,
                        "correct": mine[(lesson, number)].correct,
                        "seconds": mine[(lesson, number)].seconds,
                    }
                    if (lesson, number) in mine
                    else None
                    for lesson, number, _ in steps
                ],
            }
        )
    return {
        "workshop": workshop.name,
        "code": workshop.code,
        "expires_at": workshop.expires_at,
        "reveal": workshop.reveal,
        "students": people,
        "idle": [row.name for row in students if now - row.last_seen >= IDLE_SECONDS],
        "funnel": funnel,
        "answers": {key: dict(counter.most_common()) for key, counter in answers.items()},
        "grid": grid,
    }


def export_csv(name: str, out: Path) -> int:
    """Every student's every step (reached, done, time spent, last answer, right or wrong) as CSV;
    returns the rows."""
    workshop = get(name)
    students, records = _class(workshop)
    named = {row.id: row.name for row in students}
    rows = [
        {
            "student": named[who],
            "lesson": lesson,
            "step": step,
            "reached_at": record.reached_at,
            "done_at": "" if record.done_at is None else record.done_at,
            "answer": record.answer or "",
            "correct": "" if record.attempts == 0 else record.correct,
            "attempts": record.attempts,
            "seconds": record.seconds,
        }
        for (who, lesson, step), record in sorted(
            records.items(),
            key=lambda item: (named[item[0][0]].casefold(), workshop.lessons.index(item[0][1]), item[0][2]),
        )
    ]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out, buffer.getvalue())
    return len(rows)
