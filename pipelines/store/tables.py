"""Every table of the playground, in one module that imports neither the store nor the job runner.

`db` opens the database and `schema` brings it to these definitions; `jobs` and `preferences`
read and write them. Keeping the mapped classes apart means importing the database never imports
the code that uses it (no import circle). A change here needs a revision in
`pipelines/store/migrations/versions/` (`make migration MESSAGE="..."` writes one), or existing
databases never get it: `tests/integration/test_migrations.py` fails until they do.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Every table of the playground."""


# --- jobs (pipelines.store.jobs) ----------------------------------------------------------------------


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_started: Mapped[float | None] = mapped_column(Float, nullable=True)
    foreground: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # the running job's last sign of life
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(Text, default="{}")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)


# --- preferences (pipelines.labels.preferences) --------------------------------------------------------


class PrefItem(Base):
    __tablename__ = "pref_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)  # JSON list of {role, content}
    prompt_text: Mapped[str] = mapped_column(Text)  # the last user message, for display and grouping
    origin: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float, index=True)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class PrefResponse(Base):
    __tablename__ = "pref_responses"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("pref_items.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # where it was shown: 0 = A (left), 1 = B, ...
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(256))  # "base" or the adapter's name
    model: Mapped[str] = mapped_column(String(256))  # the base model
    sampling: Mapped[str] = mapped_column(Text, default="{}")
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)


class PrefLabel(Base):
    __tablename__ = "pref_labels"
    __table_args__ = (UniqueConstraint("item_id", "annotator", name="one_vote_per_annotator"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("pref_items.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(128), index=True)
    choice: Mapped[str] = mapped_column(String(16))  # A | B | tie | both_bad | ranking | up | down
    ranking: Mapped[str] = mapped_column(Text)  # JSON: groups of positions, best first, e.g. [[1], [0]]
    rationale: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    session: Mapped[str | None] = mapped_column(String(128), nullable=True)


class PrefPrompt(Base):
    __tablename__ = "pref_prompts"
    __table_args__ = (UniqueConstraint("set_name", "prompt_text", name="unique_prompt_in_set"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_name: Mapped[str] = mapped_column(String(128), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    prompt_text: Mapped[str] = mapped_column(Text)
    used: Mapped[int] = mapped_column(Integer, default=0)


# --- label drives (pipelines.labels.drives) ------------------------------------------------------------


class PrefDrive(Base):
    """A named set of items to label, each by `overlap` annotators, with unannounced gold checks."""

    __tablename__ = "pref_drives"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    overlap: Mapped[int] = mapped_column(Integer, default=1)  # labels wanted per (non-gold) item
    gold_threshold: Mapped[float] = mapped_column(
        Float, default=0.0
    )  # below it, an annotator's labels are not exported
    gold_rate: Mapped[float] = mapped_column(Float, default=0.1)  # share of served items that are gold checks
    lease_seconds: Mapped[float] = mapped_column(Float, default=1800.0)  # a served, unlabelled item is held this long
    # anonymous visitors (PLAYGROUND_ANONYMOUS_LABELS) may not label this drive: for overlap > 1, where
    # one person posing as several could supply an item's labels
    signed_in_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class PrefDriveItem(Base):
    __tablename__ = "pref_drive_items"

    item_id: Mapped[str] = mapped_column(ForeignKey("pref_items.id", ondelete="CASCADE"), primary_key=True)
    drive: Mapped[str] = mapped_column(ForeignKey("pref_drives.name", ondelete="CASCADE"), index=True)
    gold: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON {"choice", "ranking"}: the known answer
    added_at: Mapped[float] = mapped_column(Float)


class PrefAssignment(Base):
    """An item served to an annotator: it holds one of the item's `overlap` places until labelled or expired."""

    __tablename__ = "pref_assignments"
    __table_args__ = (UniqueConstraint("item_id", "annotator", name="one_assignment_per_annotator"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    drive: Mapped[str] = mapped_column(String(128), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("pref_items.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(128), index=True)
    served_at: Mapped[float] = mapped_column(Float)
    # the client's address as a keyed hash (pipelines.access.VisitorKeys.address_key): anonymous visitors'
    # holds and new identities are capped per address, and one address never supplies two labels of an item
    client: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


# --- workshops (pipelines.lessons.workshops) -------------------------------------------------------


class WorkshopRow(Base):
    """A class run from the app: its lessons, the tabs students may use, what is pinned, when it ends."""

    __tablename__ = "workshops"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True, index=True)  # what students type or follow
    lessons: Mapped[str] = mapped_column(Text)  # JSON list of lesson ids, in order
    tabs: Mapped[str] = mapped_column(Text)  # JSON list of the tabs students may use
    pinned: Mapped[str] = mapped_column(Text, default="{}")  # JSON {"adapter", "sampling"}: the class's set-up
    drive: Mapped[str | None] = mapped_column(String(128), nullable=True)  # a label drive for the class
    reveal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())  # show expected answers
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    expires_at: Mapped[float] = mapped_column(Float)


class WorkshopStudent(Base):
    __tablename__ = "workshop_students"
    __table_args__ = (UniqueConstraint("workshop", "name", name="one_name_per_workshop"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random: what the student's browser keeps
    workshop: Mapped[str] = mapped_column(ForeignKey("workshops.name", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))  # the display name, seen only by the lecturer
    joined_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    # the browser that joined (a keyed hash of its visitor id): the tabs its workshop hides are refused to it
    visitor: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)


class WorkshopEvent(Base):
    """A student reached a step, set it up, marked it done, or answered its check (every attempt kept)."""

    __tablename__ = "workshop_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    student: Mapped[str] = mapped_column(ForeignKey("workshop_students.id", ondelete="CASCADE"), index=True)
    lesson: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)  # 1-based, as the lesson shows it
    kind: Mapped[str] = mapped_column(String(16))  # reached | done | answer
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: a check without a right answer
    at: Mapped[float] = mapped_column(Float)


# --- a signed-in person's recent work (pipelines.store.work_history) ---------------------------------


class WorkHistoryRow(Base):
    """A signed-in person's recent results in one tab, kept on the server so another device shows them too
    (issue 43): the same entries the browser keeps, each signed by the server for its owner."""

    __tablename__ = "work_history"

    user: Mapped[str] = mapped_column(String(128), primary_key=True)
    tab: Mapped[str] = mapped_column(String(32), primary_key=True)
    entries: Mapped[str] = mapped_column(Text)  # JSON list, newest first
    updated_at: Mapped[float] = mapped_column(Float)
    cleared_at: Mapped[float] = mapped_column(Float)  # Clear history: older entries are not taken back
