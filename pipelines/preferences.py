"""Human preference labels: items, responses, votes -- stored durably, exported for trl.

An *item* is a prompt (a list of chat messages) with 1-4 responses. Each response keeps its
source (base model or adapter), sampling settings, seed and the position it was *shown* in,
because position bias is real: arenas shuffle the order and so do we. A *label* is one
annotator's vote on one item: A / B / tie / both bad for two responses, a ranking with ties for
more, or thumbs up / down for one. (item, annotator) is unique, so submitting the same vote
twice is a no-op and concurrent annotators never duplicate a label.

Exports use trl's conversational explicit-prompt format (`prompt`, `chosen`, `rejected` as
message lists); rankings expand into every implied pair; ties, both-bad and thumbs go to an
unpaired KTO-style export (`prompt`, `completion`, `label`).
"""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from sqlalchemy import delete, func, select

from .messages import Message, normalise
from .db import engine, session
from .rows import RowLimits, RowsError, read_rows
from .tables import PrefItem, PrefLabel, PrefPrompt, PrefResponse
from .errors import InvalidParameter, PlaygroundError

LETTERS = "ABCD"
TWO_WAY = ("A", "B", "tie", "both_bad")
THUMBS = ("up", "down")
MAX_RESPONSES = 4
MAX_RATIONALE = 4_000
MAX_IMPORT_ROWS = 200_000


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


def next_unlabelled(annotator: str, *, min_responses: int = 2) -> ItemView | None:
    """The oldest item this annotator has not voted on (e.g. imported or sent from Chat)."""
    with session() as s:
        voted = select(PrefLabel.item_id).where(PrefLabel.annotator == annotator)
        counts = select(PrefResponse.item_id, func.count().label("n")).group_by(PrefResponse.item_id).subquery()
        item_id = s.scalar(
            select(PrefItem.id)
            .join(counts, counts.c.item_id == PrefItem.id)
            .where(counts.c.n >= min_responses, PrefItem.id.not_in(voted))
            .order_by(PrefItem.created_at)
            .limit(1)
        )
    return get_item(item_id) if item_id else None


def delete_item(item_id: str) -> bool:
    with session() as s:
        s.execute(delete(PrefLabel).where(PrefLabel.item_id == item_id))
        s.execute(delete(PrefResponse).where(PrefResponse.item_id == item_id))
        return s.execute(delete(PrefItem).where(PrefItem.id == item_id)).rowcount == 1


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
) -> VoteResult:
    """Store a vote once. The same vote again is a no-op; a different one is refused (votes lock)."""
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
    with session() as s:
        inserted = s.execute(_insert_ignore(values)).rowcount == 1
        existing = s.scalar(select(PrefLabel).where(PrefLabel.item_id == item_id, PrefLabel.annotator == annotator))
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
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # other databases: a plain insert, the unique constraint still protects the data
        from sqlalchemy import insert as plain_insert

        return plain_insert(PrefLabel).values(**values)
    return insert(PrefLabel).values(**values).on_conflict_do_nothing(index_elements=["item_id", "annotator"])


def delete_label(item_id: str, annotator: str) -> bool:
    with session() as s:
        return (
            s.execute(delete(PrefLabel).where(PrefLabel.item_id == item_id, PrefLabel.annotator == annotator)).rowcount
            == 1
        )


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


def read_prompts(path: Path) -> tuple[list[list[Message]], list[Any]]:
    """Prompts from a JSONL/CSV/Parquet file with a 'prompt' column (text or messages), and row problems."""
    from . import sft_data

    prompts, problems = [], []
    for number, record, error in sft_data._records(Path(path)):
        if error:
            problems.append(sft_data.RowProblem(number, None, error))
            continue
        value = record.get("prompt") if isinstance(record, dict) else None
        if isinstance(value, str) and value.strip():
            prompts.append([Message("user", value.strip())])
        elif isinstance(value, list):
            try:
                prompts.append(normalise(value))
            except InvalidParameter as problem:
                problems.append(sft_data.RowProblem(number, "prompt", str(problem)))
        else:
            problems.append(sft_data.RowProblem(number, "prompt", "is missing or not text"))
    if not prompts:
        raise sft_data.DataError("no usable prompts in the file (it needs a 'prompt' column)")
    return prompts, problems


def stored_prompts() -> list[list[Message]]:
    """Every distinct prompt in the store: those of comparison items, then those of prompt sets."""
    seen, out = set(), []
    with session() as s:
        rows = [r for r in s.scalars(select(PrefItem.prompt))] + [r for r in s.scalars(select(PrefPrompt.prompt))]
    for raw in rows:
        if raw not in seen:
            seen.add(raw)
            out.append(normalise(json.loads(raw)))
    return out


def prompt_sets() -> dict[str, int]:
    with session() as s:
        return {
            name: n for name, n in s.execute(select(PrefPrompt.set_name, func.count()).group_by(PrefPrompt.set_name))
        }


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


# --- from votes to training data ---------------------------------------------------------------


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def pairs_and_unpaired(items: Iterable[ItemView] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All labels as trl rows: (pairs, unpaired).

    Pairs: every (better, worse) combination implied by a vote -- a ranking of n responses in
    distinct groups gives up to n(n-1)/2 pairs. Unpaired (KTO): ties and both-bad (which say
    nothing about order) and thumbs. A tie marks both responses acceptable (label true);
    both-bad marks both unacceptable (label false).
    """
    pairs: list[dict[str, Any]] = []
    unpaired: list[dict[str, Any]] = []
    for item in items if items is not None else _all_items():
        prompt = [m.to_json() for m in item.prompt]
        by_position = {r.position: r for r in item.responses}
        for label in item.labels:
            meta = {"item_id": item.id, "annotator": label.annotator}
            if label.choice in THUMBS:
                unpaired.append(
                    {
                        "prompt": prompt,
                        "completion": _assistant(by_position[0].text),
                        "label": label.choice == "up",
                        **meta,
                    }
                )
                continue
            if label.choice in ("tie", "both_bad"):
                for response in item.responses:
                    unpaired.append(
                        {
                            "prompt": prompt,
                            "completion": _assistant(response.text),
                            "label": label.choice == "tie",
                            **meta,
                        }
                    )
                continue
            for better_group, worse_group in itertools.combinations(label.ranking, 2):
                for better, worse in itertools.product(better_group, worse_group):
                    pairs.append(
                        {
                            "prompt": prompt,
                            "chosen": _assistant(by_position[better].text),
                            "rejected": _assistant(by_position[worse].text),
                            **meta,
                        }
                    )
    return pairs, unpaired


def _all_items() -> Iterable[ItemView]:
    offset = 0
    while True:
        batch = list_items(limit=500, offset=offset)
        if not batch:
            return
        yield from batch
        offset += len(batch)


TRL_PAIR_COLUMNS = ("prompt", "chosen", "rejected")
TRL_UNPAIRED_COLUMNS = ("prompt", "completion", "label")


def export(path: str | Path, fmt: str = "jsonl") -> dict[str, Any]:
    """Write the store in trl's format: jsonl | parquet | dataset (a `datasets` dir) | unpaired (jsonl)."""
    from datasets import Dataset

    pairs, unpaired = pairs_and_unpaired()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "unpaired":
        rows = [{k: r[k] for k in TRL_UNPAIRED_COLUMNS} for r in unpaired]
    elif fmt in ("jsonl", "parquet", "dataset"):
        rows = [{k: r[k] for k in TRL_PAIR_COLUMNS} for r in pairs]
    else:
        raise PreferenceError(f"unknown export format {fmt!r}: use jsonl, parquet, dataset or unpaired")
    tmp = path.with_name(f".tmp-{path.name}")
    if fmt in ("jsonl", "unpaired"):
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "parquet":
        Dataset.from_list(rows).to_parquet(str(tmp)) if rows else _empty_parquet(tmp)
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        Dataset.from_list(rows).save_to_disk(str(tmp)) if rows else Dataset.from_dict(
            {c: [] for c in TRL_PAIR_COLUMNS}
        ).save_to_disk(str(tmp))
        shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)
    return {"path": str(path), "format": fmt, "rows": len(rows), "pairs": len(pairs), "unpaired": len(unpaired)}


def _empty_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in TRL_PAIR_COLUMNS}), str(path))


def push_to_hub(repo_id: str, token: str | None = None, *, private: bool = True) -> dict[str, Any]:
    """Upload the labels to a dataset repo on the Hub, one config per shape of row.

    Pairs (`prompt`/`chosen`/`rejected`, what RewardTrainer and DPOTrainer take) are the default
    config "pairs"; ties, both-bad and thumbs (`prompt`/`completion`/`label`, KTO-style) are the
    config "unpaired". They cannot be splits of one DatasetDict: splits must share their columns.
    Returns {"url", "configs": {name: rows}}.
    """
    from datasets import Dataset

    pairs, unpaired = pairs_and_unpaired()
    tables = {
        "pairs": [{k: r[k] for k in TRL_PAIR_COLUMNS} for r in pairs],
        "unpaired": [{k: r[k] for k in TRL_UNPAIRED_COLUMNS} for r in unpaired],
    }
    tables = {name: rows for name, rows in tables.items() if rows}
    if not tables:
        raise PreferenceError("there are no labels to push yet")
    try:
        for name, rows in tables.items():
            Dataset.from_list(rows).push_to_hub(
                repo_id,
                config_name=name,
                split="train",
                set_default=name == next(iter(tables)),
                token=token,
                private=private,
                commit_message=f"LLM Playground: {len(rows)} {name} rows",
            )
    except Exception as error:  # noqa: BLE001 - offline, bad token, no permission: all one message
        raise PreferenceError(f"could not push to the Hub ({str(error).splitlines()[0][:200]})") from error
    return {
        "url": f"https://huggingface.co/datasets/{repo_id}",
        "configs": {name: len(rows) for name, rows in tables.items()},
    }


# --- import ------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    imported: int
    errors: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"imported": self.imported, "errors": self.errors}


def _as_messages(value: Any, role: str, field_name: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise PreferenceError(f"{field_name} is empty")
        return [Message(role, value)]
    if isinstance(value, list):
        try:
            messages = normalise(value)
        except InvalidParameter as error:
            raise PreferenceError(f"{field_name}: {str(error).split(': ', 1)[-1]}") from error
        if not messages:
            raise PreferenceError(f"{field_name} is an empty list")
        return messages
    raise PreferenceError(f"{field_name} must be text or a list of messages")


IMPORT_LIMITS = RowLimits(max_bytes=200_000_000, max_rows=MAX_IMPORT_ROWS)


def _read_rows(path: Path) -> Iterable[tuple[int, Any, str | None]]:
    if path.is_dir():
        from datasets import load_from_disk

        try:
            dataset = load_from_disk(str(path))
        except Exception as error:  # noqa: BLE001
            raise PreferenceError(f"{path.name} is not a saved datasets directory ({error})") from error
        splits = list(dataset.values()) if hasattr(dataset, "keys") else [dataset]  # a DatasetDict: every split
        total = sum(split.num_rows for split in splits)
        if total > MAX_IMPORT_ROWS:  # counted from the arrow metadata, before any row is read
            raise PreferenceError(f"{path.name} has {total:,} rows; the limit is {MAX_IMPORT_ROWS:,}")
        for split in splits:
            yield from ((i, row, None) for i, row in enumerate(split, start=1))
        return
    try:
        yield from read_rows(path, IMPORT_LIMITS, formats=(".jsonl", ".json", ".ndjson", ".parquet"))
    except RowsError as error:
        raise PreferenceError(str(error).replace(": use", ": use a datasets directory, or")) from error


def read_pairs(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """trl preference rows from a file, validated row by row: (rows as message lists, errors)."""
    rows, errors = [], []
    for number, record, error in _read_rows(Path(path)):
        if error:
            errors.append({"line": number, "error": error})
            continue
        try:
            if not isinstance(record, dict):
                raise PreferenceError("is not an object")
            if {"chosen", "rejected"} <= set(record):
                prompt, chosen, rejected = _pair_parts(record)
                rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            elif {"completion", "label"} <= set(record):
                prompt = _as_messages(record.get("prompt"), "user", "prompt")
                completion = _as_messages(record["completion"], "assistant", "completion")
                if not isinstance(record["label"], bool):
                    raise PreferenceError("label must be true or false")
                rows.append({"prompt": prompt, "completion": completion, "label": record["label"]})
            else:
                raise PreferenceError("needs prompt + chosen + rejected, or prompt + completion + label")
        except PreferenceError as problem:
            errors.append({"line": number, "error": str(problem)})
    return rows, errors


def _pair_parts(record: dict[str, Any]) -> tuple[list[Message], list[Message], list[Message]]:
    chosen = _as_messages(record["chosen"], "assistant", "chosen")
    rejected = _as_messages(record["rejected"], "assistant", "rejected")
    if "prompt" in record and record["prompt"] is not None:
        prompt = _as_messages(record["prompt"], "user", "prompt")
    else:  # implicit prompt: the shared conversation before the last assistant turn
        if len(chosen) < 2 or chosen[:-1] != rejected[:-1]:
            raise PreferenceError("without a prompt, chosen and rejected must share everything but the last message")
        prompt, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
    if prompt[-1].role != "user":
        raise PreferenceError("the prompt must end with a user message")
    if chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
        raise PreferenceError("chosen and rejected must end with an assistant message")
    return prompt, chosen[-1:], rejected[-1:]


def import_file(path: str | Path, *, annotator: str | None = None) -> ImportResult:
    """Add preference rows from a file to the store, as labelled items (row-level errors kept)."""
    path = Path(path)
    rows, errors = read_pairs(path)
    annotator = annotator or f"import:{path.name}"[:128]
    imported = 0
    for row in rows:
        if "chosen" in row:
            item = create_item(
                row["prompt"],
                [
                    ResponseDraft(row["chosen"][0].content, source="imported"),
                    ResponseDraft(row["rejected"][0].content, source="imported"),
                ],
                origin=f"import:{path.name}",
                created_by=annotator,
            )
            chosen_position = next(r.position for r in item.responses if r.text == row["chosen"][0].content)
            submit_label(item.id, annotator, LETTERS[chosen_position])
        else:
            item = create_item(
                row["prompt"],
                [ResponseDraft(row["completion"][0].content, source="imported")],
                origin=f"import:{path.name}",
                created_by=annotator,
            )
            submit_label(item.id, annotator, "up" if row["label"] else "down")
        imported += 1
    return ImportResult(imported, errors)


# --- what the labels say -----------------------------------------------------------------------


def stats(items: Sequence[ItemView] | None = None) -> dict[str, Any]:
    """Totals, labels per annotator, agreement, position bias, tie and both-bad rates."""
    items = list(items if items is not None else _all_items())
    labels = [label for item in items for label in item.labels]
    per_annotator = Counter(label.annotator for label in labels)
    choices = Counter(label.choice for label in labels)
    two_way = [lb for lb in labels if lb.choice in TWO_WAY]
    decisive = [lb for lb in two_way if lb.choice in ("A", "B")]
    agree = total_pairs = 0
    for item in items:
        votes = [lb for lb in item.labels if lb.choice not in THUMBS]
        for a, b in itertools.combinations(votes, 2):
            total_pairs += 1
            agree += a.ranking == b.ranking and (a.choice == "both_bad") == (b.choice == "both_bad")
    return {
        "items": len(items),
        "labels": len(labels),
        "labelled_items": sum(1 for item in items if item.labels),
        "per_annotator": dict(per_annotator.most_common()),
        "choices": dict(choices),
        "agreement": agree / total_pairs if total_pairs else None,
        "agreement_pairs": total_pairs,
        "left_wins": sum(lb.choice == "A" for lb in decisive) / len(decisive) if decisive else None,
        "decisive_votes": len(decisive),
        "tie_rate": choices["tie"] / len(two_way) if two_way else None,
        "both_bad_rate": choices["both_bad"] / len(two_way) if two_way else None,
    }


def leaderboard_gap(items: Sequence[ItemView] | None = None) -> str:
    """Why `leaderboard` has nothing to rank, in a sentence a person can act on."""
    items = list(items if items is not None else _all_items())
    compared = [item for item in items if any(label.choice not in THUMBS for label in item.labels)]
    if not compared:
        return "no comparison votes yet (👍/👎 on a single reply rank nothing)."
    if not any(len({r.source for r in item.responses}) > 1 for item in compared):
        sources = ", ".join(sorted({r.source for item in compared for r in item.responses}))
        return (
            f"every vote so far compares responses of one source with each other ({sources}), so no source can beat "
            "another. Pick different models for Source A and B (e.g. the base model and an adapter) to rank them."
        )
    return "no vote between two different sources can be scored yet."


def leaderboard(items: Sequence[ItemView] | None = None) -> list[dict[str, Any]]:
    """Bradley-Terry ratings of the response sources from the votes, as in chatbot arenas.

    Every pair implied by a vote is one comparison; a tie counts as half a win each way. Ratings
    are on an Elo-like scale (400 log10 units, mean 1000).
    """
    import choix
    import numpy as np

    items = list(items if items is not None else _all_items())
    comparisons: list[tuple[str, str, float]] = []
    for item in items:
        source = {r.position: r.source for r in item.responses}
        for label in item.labels:
            if label.choice in THUMBS:
                continue
            for group in label.ranking:  # ties inside a group
                for a, b in itertools.combinations(group, 2):
                    if source[a] != source[b]:
                        comparisons.append((source[a], source[b], 0.5))
            for better_group, worse_group in itertools.combinations(label.ranking, 2):
                for better, worse in itertools.product(better_group, worse_group):
                    if source[better] != source[worse]:
                        comparisons.append((source[better], source[worse], 1.0))
    names = sorted({n for a, b, _ in comparisons for n in (a, b)})
    if len(names) < 2:
        return []
    index = {name: i for i, name in enumerate(names)}
    data: list[tuple[int, int]] = []
    record = {name: Counter() for name in names}
    for winner, loser, weight in comparisons:
        if weight == 1.0:
            data.append((index[winner], index[loser]))
            record[winner]["wins"] += 1
            record[loser]["losses"] += 1
        else:  # a tie: one win each way keeps the counts integral and the estimate symmetric
            data.extend([(index[winner], index[loser]), (index[loser], index[winner])])
            record[winner]["ties"] += 1
            record[loser]["ties"] += 1
    params = choix.ilsr_pairwise(len(names), data, alpha=0.01)
    scale = 400 / np.log(10)
    ratings = 1000 + scale * (params - params.mean())
    table = [
        {
            "source": name,
            "rating": round(float(ratings[index[name]]), 1),
            "wins": record[name]["wins"],
            "losses": record[name]["losses"],
            "ties": record[name]["ties"],
            "comparisons": record[name]["wins"] + record[name]["losses"] + record[name]["ties"],
        }
        for name in names
    ]
    return sorted(table, key=lambda row: -row["rating"])
