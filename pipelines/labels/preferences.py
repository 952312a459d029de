"""Human preference labels: items, responses, votes -- stored durably, exported for trl.

An *item* is a prompt (a list of chat messages) with 1-4 responses. Each response keeps its
source (base model or adapter), sampling settings, seed and the position it was *shown* in,
because position bias is real: arenas shuffle the order and so do we. A *label* is one
annotator's vote on one item: A / B / tie / both bad for two responses, a ranking with ties for
more, or thumbs up / down for one. (item, annotator) is unique, so submitting the same vote
twice is a no-op and concurrent annotators never duplicate a label.

The votes become trl's training data in `preference_data` (export, import, the Hub) and
statistics in `preference_stats`; this module is the store alone.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select

from pipelines.engine.messages import Message, normalise
from pipelines.errors import PlaygroundError
from pipelines.labels import drives
from pipelines.store.db import engine, locked_session, rowcount, session
from pipelines.store.tables import PrefDriveItem, PrefItem, PrefLabel, PrefPrompt, PrefResponse

LETTERS = "ABCD"
TWO_WAY = ("A", "B", "tie", "both_bad")
THUMBS = ("up", "down")
MAX_RESPONSES = 4
MAX_RATIONALE = 4_000


class PreferenceError(PlaygroundError, ValueError):
    """A vote or item is invalid; the message says why."""


# --- views -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseView:
    id: str
    position: int
    text: str
    source: str
    model: str
    sampling: dict[str, Any]
    seed: int | None

    @property
    def letter(self) -> str:
        return LETTERS[self.position]


@dataclass(frozen=True)
class LabelView:
    item_id: str
    annotator: str
    choice: str
    ranking: list[list[int]]
    rationale: str
    created_at: float

    def describe(self) -> str:
        """The vote in words, as people say it ("A better", "B > A = C")."""
        if self.choice in ("A", "B"):
            return f"{self.choice} better"
        if self.choice == "both_bad":
            return "both bad"
        if self.choice == "ranking":
            return " > ".join(" = ".join(LETTERS[p] for p in group) for group in self.ranking)
        return self.choice


@dataclass(frozen=True)
class ItemView:
    id: str
    prompt: list[Message]
    prompt_text: str
    origin: str
    created_at: float
    responses: list[ResponseView]  # in display order
    labels: list[LabelView] = field(default_factory=list)

    def label_by(self, annotator: str) -> LabelView | None:
        return next((label for label in self.labels if label.annotator == annotator), None)


@dataclass
class ResponseDraft:
    text: str
    source: str = "base"
    model: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


def _messages_json(messages: Sequence[Message]) -> str:
    return json.dumps([m.to_json() for m in messages], ensure_ascii=False)


def _prompt_text(messages: Sequence[Message]) -> str:
    users = [m.content for m in messages if m.role == "user"]
    return users[-1] if users else messages[-1].content


def _item_view(item: PrefItem, responses: Iterable[PrefResponse], labels: Iterable[PrefLabel]) -> ItemView:
    return ItemView(
        id=item.id,
        prompt=normalise(json.loads(item.prompt)),
        prompt_text=item.prompt_text,
        origin=item.origin,
        created_at=item.created_at,
        responses=sorted(
            (
                ResponseView(r.id, r.position, r.text, r.source, r.model, json.loads(r.sampling or "{}"), r.seed)
                for r in responses
            ),
            key=lambda r: r.position,
        ),
        labels=[
            LabelView(lb.item_id, lb.annotator, lb.choice, json.loads(lb.ranking), lb.rationale, lb.created_at)
            for lb in labels
        ],
    )


# --- items -------------------------------------------------------------------------------------


def create_item(
    prompt: Sequence[Message] | Sequence[dict[str, Any]],
    responses: Sequence[ResponseDraft],
    *,
    origin: str = "typed",
    created_by: str | None = None,
    shuffle: bool = True,
    rng: random.Random | None = None,
) -> ItemView:
    """Store a prompt and its responses, shown in random order (the order is stored)."""
    messages = normalise(prompt)
    if not messages or messages[-1].role != "user":
        raise PreferenceError("the prompt must end with a user message")
    if not 1 <= len(responses) <= MAX_RESPONSES:
        raise PreferenceError(f"an item has 1 to {MAX_RESPONSES} responses, got {len(responses)}")
    order = list(range(len(responses)))
    if shuffle:
        (rng or random.SystemRandom()).shuffle(order)
    item_id = uuid.uuid4().hex[:12]
    with session() as s:
        item = PrefItem(
            id=item_id,
            prompt=_messages_json(messages),
            prompt_text=_prompt_text(messages)[:10_000],
            origin=origin[:128],
            created_at=time.time(),
            created_by=created_by,
        )
        s.add(item)
        s.flush()  # the item row must exist before responses reference it
        rows = []
        for position, draft_index in enumerate(order):
            draft = responses[draft_index]
            rows.append(
                PrefResponse(
                    id=uuid.uuid4().hex[:12],
                    item_id=item_id,
                    position=position,
                    text=draft.text,
                    source=draft.source[:256],
                    model=draft.model[:256],
                    sampling=json.dumps(draft.sampling),
                    seed=draft.seed,
                )
            )
        s.add_all(rows)
        s.flush()
        return _item_view(item, rows, [])


def get_item(item_id: str) -> ItemView:
    with session() as s:
        item = s.get(PrefItem, item_id)
        if item is None:
            raise PreferenceError(f"no item {item_id!r}")
        responses = s.scalars(select(PrefResponse).where(PrefResponse.item_id == item_id)).all()
        labels = s.scalars(select(PrefLabel).where(PrefLabel.item_id == item_id)).all()
        return _item_view(item, responses, labels)


def list_items(limit: int = 200, offset: int = 0) -> list[ItemView]:
    with session() as s:
        items = s.scalars(select(PrefItem).order_by(PrefItem.created_at.desc()).limit(limit).offset(offset)).all()
        ids = [i.id for i in items]
        responses = defaultdict(list)
        for r in s.scalars(select(PrefResponse).where(PrefResponse.item_id.in_(ids))):
            responses[r.item_id].append(r)
        labels = defaultdict(list)
        for lb in s.scalars(select(PrefLabel).where(PrefLabel.item_id.in_(ids))):
            labels[lb.item_id].append(lb)
        return [_item_view(i, responses[i.id], labels[i.id]) for i in items]


def all_items() -> Iterable[ItemView]:
    """Every item, newest first, read a page at a time."""
    offset = 0
    while True:
        batch = list_items(limit=500, offset=offset)
        if not batch:
            return
        yield from batch
        offset += len(batch)


def next_unlabelled(annotator: str, *, min_responses: int = 2) -> ItemView | None:
    """The oldest item this annotator has not voted on (e.g. imported or sent from Chat). Items of
    label drives are left out: a drive serves them itself, counting their places."""
    with session() as s:
        voted = select(PrefLabel.item_id).where(PrefLabel.annotator == annotator)
        in_drives = select(PrefDriveItem.item_id)
        counts = select(PrefResponse.item_id, func.count().label("n")).group_by(PrefResponse.item_id).subquery()
        item_id = s.scalar(
            select(PrefItem.id)
            .join(counts, counts.c.item_id == PrefItem.id)
            .where(counts.c.n >= min_responses, PrefItem.id.not_in(voted), PrefItem.id.not_in(in_drives))
            .order_by(PrefItem.created_at)
            .limit(1)
        )
    return get_item(item_id) if item_id else None


def delete_item(item_id: str) -> bool:
    with session() as s:
        drives.forget_item(s, item_id)
        s.execute(delete(PrefLabel).where(PrefLabel.item_id == item_id))
        s.execute(delete(PrefResponse).where(PrefResponse.item_id == item_id))
        return rowcount(s.execute(delete(PrefItem).where(PrefItem.id == item_id))) == 1


# --- votes -------------------------------------------------------------------------------------


def ranking_for(choice: str, n_responses: int, ranking: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """Normalise a vote to groups of positions, best first (ties share a group)."""
    if n_responses == 1:
        if choice not in THUMBS:
            raise PreferenceError("a single response takes a thumbs up or down")
        return [[0]]
    if choice in ("A", "B"):
        if n_responses != 2:
            raise PreferenceError("A/B votes are for two responses; rank them instead")
        best = LETTERS.index(choice)
        return [[best], [1 - best]]
    if choice in ("tie", "both_bad"):
        return [list(range(n_responses))]
    if choice == "ranking":
        if not ranking:
            raise PreferenceError("a ranking needs at least one group")
        groups = [sorted(int(p) for p in group) for group in ranking if list(group)]
        seen = [p for group in groups for p in group]
        if sorted(seen) != list(range(n_responses)):
            raise PreferenceError(f"a ranking must place each of the {n_responses} responses exactly once")
        return groups
    raise PreferenceError(f"unknown vote {choice!r}")


def parse_ranking(text: str, n_responses: int) -> list[list[int]]:
    """'D > C > A = B' -> [[3], [2], [0, 1]]."""
    groups = []
    for part in text.replace(" ", "").upper().split(">"):
        if not part:
            raise PreferenceError(f"cannot read the ranking {text!r}")
        letters = part.split("=")
        if any(len(x) != 1 or x not in LETTERS[:n_responses] for x in letters):
            raise PreferenceError(f"use letters {', '.join(LETTERS[:n_responses])} in the ranking, e.g. 'B > A = C'")
        groups.append([LETTERS.index(x) for x in letters])
    return ranking_for("ranking", n_responses, groups)


@dataclass(frozen=True)
class VoteResult:
    label: LabelView
    created: bool  # False when the same vote had already been stored


def submit_label(
    item_id: str,
    annotator: str,
    choice: str,
    *,
    ranking: Sequence[Sequence[int]] | None = None,
    rationale: str = "",
    session_id: str | None = None,
    client: str | None = None,
) -> VoteResult:
    """Store a vote once. The same vote again is a no-op; a different one is refused (votes lock).

    `session_id` and `client` are keyed hashes (of the browser session and the client's address),
    never what the client sent: a label drive keeps anonymous visitors from one address apart."""
    annotator = (annotator or "").strip()
    if not annotator:
        raise PreferenceError("say who you are (annotator name) before voting")
    if len(annotator) > 128:
        raise PreferenceError("the annotator name is longer than 128 characters")
    if len(rationale or "") > MAX_RATIONALE:
        raise PreferenceError(f"the rationale is longer than {MAX_RATIONALE} characters")
    with session() as s:
        n = s.scalar(select(func.count()).select_from(PrefResponse).where(PrefResponse.item_id == item_id))
        if not n:
            raise PreferenceError(f"no item {item_id!r}")
    groups = ranking_for(choice, n, ranking)
    stored_choice = "ranking" if choice == "ranking" else choice
    values = {
        "item_id": item_id,
        "annotator": annotator,
        "choice": stored_choice,
        "ranking": json.dumps(groups),
        "rationale": (rationale or "").strip(),
        "created_at": time.time(),
        "session": session_id,
    }
    in_drive = drives.drive_of(item_id) is not None
    with locked_session() if in_drive else session() as s:
        if in_drive:  # the item's places are counted and taken in the same step as the vote
            drives.admit(s, item_id, annotator, client=client)
        inserted = s.execute(_insert_ignore(values)).first() is not None  # RETURNING: a row only when new
        existing = s.scalar(select(PrefLabel).where(PrefLabel.item_id == item_id, PrefLabel.annotator == annotator))
        if existing is None:  # deleted between the insert and this read (an admin removed the item)
            raise PreferenceError(f"item {item_id} is gone")
        view = LabelView(
            existing.item_id,
            existing.annotator,
            existing.choice,
            json.loads(existing.ranking),
            existing.rationale,
            existing.created_at,
        )
    if not inserted and (view.choice != stored_choice or view.ranking != groups):
        raise PreferenceError(f"{annotator} already voted on this item ({view.choice}); votes are locked once cast")
    return VoteResult(view, inserted)


def _insert_ignore(values: dict[str, Any]):
    """INSERT ... ON CONFLICT DO NOTHING in the running database's dialect."""
    dialect = engine().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return (
            postgresql_insert(PrefLabel)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["item_id", "annotator"])
            .returning(PrefLabel.id)
        )
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return (
            sqlite_insert(PrefLabel)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["item_id", "annotator"])
            .returning(PrefLabel.id)
        )
    from sqlalchemy import insert as plain_insert  # other databases: the unique constraint still protects the data

    return plain_insert(PrefLabel).values(**values).returning(PrefLabel.id)


# --- prompt sets -------------------------------------------------------------------------------


def add_prompt_set(name: str, prompts: Sequence[Sequence[Message]]) -> int:
    """Store prompts under a set name (duplicates within the set are skipped). Returns how many are new."""
    name = (name or "").strip()[:128]
    if not name:
        raise PreferenceError("name the prompt set")
    added = 0
    for messages in prompts:
        with session() as s:
            text = _prompt_text(messages)
            exists = s.scalar(select(PrefPrompt.id).where(PrefPrompt.set_name == name, PrefPrompt.prompt_text == text))
            if exists is None:
                s.add(PrefPrompt(set_name=name, prompt=_messages_json(messages), prompt_text=text, used=0))
                added += 1
    return added


def stored_prompts() -> list[list[Message]]:
    """Every distinct prompt in the store: those of comparison items, then those of prompt sets."""
    seen, out = set(), []
    with session() as s:
        rows = list(s.scalars(select(PrefItem.prompt))) + list(s.scalars(select(PrefPrompt.prompt)))
    for raw in rows:
        if raw not in seen:
            seen.add(raw)
            out.append(normalise(json.loads(raw)))
    return out


def prompt_sets() -> dict[str, int]:
    with session() as s:
        rows = s.execute(select(PrefPrompt.set_name, func.count()).group_by(PrefPrompt.set_name))
        return {str(name): int(n) for name, n in rows}


def draw_prompt(set_name: str, rng: random.Random | None = None) -> list[Message]:
    """A least-used prompt of the set (ties broken at random), its use counted."""
    with session() as s:
        least = s.scalar(select(func.min(PrefPrompt.used)).where(PrefPrompt.set_name == set_name))
        if least is None:
            raise PreferenceError(f"no prompt set {set_name!r}")
        candidates = s.scalars(
            select(PrefPrompt).where(PrefPrompt.set_name == set_name, PrefPrompt.used == least)
        ).all()
        chosen = (rng or random).choice(candidates)
        chosen.used += 1
        return normalise(json.loads(chosen.prompt))
