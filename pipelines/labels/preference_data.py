"""Preference labels as training data: trl's formats out (files, the Hub) and in (imports).

Exports use trl's conversational explicit-prompt format (`prompt`, `chosen`, `rejected` as
message lists); rankings expand into every implied pair; ties, both-bad and thumbs go to an
unpaired KTO-style export (`prompt`, `completion`, `label`). Imports and prompt files are read
row by row within limits (`pipelines.store.rows`), so a bad row is reported, not fatal.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.engine.messages import Message, normalise
from pipelines.errors import InvalidParameter
from pipelines.labels import drives, preference_stats, preferences
from pipelines.labels.preferences import (
    LETTERS,
    THUMBS,
    ItemView,
    PreferenceError,
    ResponseDraft,
    create_item,
    submit_label,
)
from pipelines.store.rows import RowLimits, RowProblem, RowsError, bounded, read_rows

PROMPT_LIMITS = RowLimits(max_bytes=50_000_000, max_rows=100_000)


def read_prompts(path: Path) -> tuple[list[list[Message]], list[RowProblem]]:
    """Prompts from a JSONL/CSV/Parquet file with a 'prompt' column (text or messages), and row problems.
    A file with no usable prompt is refused, saying why (its first problems)."""
    prompts: list[list[Message]] = []
    problems: list[RowProblem] = []
    try:
        for number, record, error in read_rows(Path(path), PROMPT_LIMITS):
            if error:
                problems.append(RowProblem(number, None, error))
                continue
            value = record.get("prompt") if isinstance(record, dict) else None
            if isinstance(value, str) and value.strip():
                prompts.append([Message("user", value.strip())])
            elif isinstance(value, list):
                try:
                    prompts.append(normalise(value))
                except InvalidParameter as problem:
                    problems.append(RowProblem(number, "prompt", str(problem)))
            else:
                problems.append(RowProblem(number, "prompt", "is missing or not text"))
    except RowsError as error:
        raise PreferenceError(str(error)) from error
    if not prompts:
        first = "; ".join(str(p) for p in problems[:3])
        raise PreferenceError(
            "no usable prompts in the file (it needs a 'prompt' column)"
            + (f": {first}" if first else ": it has no rows")
        )
    return prompts, problems


# --- from votes to training data ---------------------------------------------------------------


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


CONSENSUS_RULES = ("majority", "unanimous")
CONSENSUS_TIES = ("count", "ignore")


@dataclass(frozen=True)
class ExportOptions:
    """Which labels become training rows.

    gold_filter: leave out the labels of annotators whose accuracy on gold items is below their
        drive's `gold_threshold` (annotators with no gold answered yet are kept).
    consensus: None for every label; "majority" or "unanimous" for one answer per item, kept only
        when the item has its drive's `overlap` labels (1 outside drives) and more than half of
        them (or all) give the same answer.
    consensus_ties: "count" -- a tie or both-bad vote is an answer of its own (A, A, tie -> A;
        A, tie -> no majority); "ignore" -- ties and both-bad abstain and the decisive votes decide
        (A, tie -> A). Items with no winning answer are left out either way.
    """

    gold_filter: bool = True
    consensus: str | None = None
    consensus_ties: str = "count"

    def __post_init__(self) -> None:
        if self.consensus is not None and self.consensus not in CONSENSUS_RULES:
            raise PreferenceError(f"consensus: {' or '.join(CONSENSUS_RULES)}, got {self.consensus!r}")
        if self.consensus_ties not in CONSENSUS_TIES:
            raise PreferenceError(f"consensus_ties: {' or '.join(CONSENSUS_TIES)}, got {self.consensus_ties!r}")


@dataclass
class TrainingRows:
    pairs: list[dict[str, Any]]
    unpaired: list[dict[str, Any]]
    excluded_labels: int = 0  # left out by the gold filter
    split_items: int = 0  # consensus: no answer won
    incomplete_items: int = 0  # consensus: fewer labels than the drive's overlap


def _answer(label: preferences.LabelView) -> tuple[str, str]:
    """What a vote says, comparable between annotators (a ranking by its groups)."""
    if label.choice in ("A", "B", "ranking"):
        return "order", json.dumps([sorted(group) for group in label.ranking])
    return label.choice, ""


def _rows_for(item: ItemView, label: preferences.LabelView, meta: dict[str, Any], out: TrainingRows) -> None:
    """The trl rows one vote implies. Pairs: every (better, worse) combination -- a ranking of n
    responses in distinct groups gives up to n(n-1)/2. Unpaired (KTO): ties and both-bad, which
    say nothing about order, and thumbs. A tie marks both responses acceptable (label true);
    both-bad marks both unacceptable (label false)."""
    prompt = [m.to_json() for m in item.prompt]
    by_position = {r.position: r for r in item.responses}
    if label.choice in THUMBS:
        out.unpaired.append(
            {"prompt": prompt, "completion": _assistant(by_position[0].text), "label": label.choice == "up", **meta}
        )
        return
    if label.choice in ("tie", "both_bad"):
        for response in item.responses:
            out.unpaired.append(
                {"prompt": prompt, "completion": _assistant(response.text), "label": label.choice == "tie", **meta}
            )
        return
    for better_group, worse_group in itertools.combinations(label.ranking, 2):
        for better, worse in itertools.product(better_group, worse_group):
            out.pairs.append(
                {
                    "prompt": prompt,
                    "chosen": _assistant(by_position[better].text),
                    "rejected": _assistant(by_position[worse].text),
                    **meta,
                }
            )


def _winner(labels: list[preferences.LabelView], options: ExportOptions) -> preferences.LabelView | None:
    votes = labels
    if options.consensus_ties == "ignore":
        votes = [lb for lb in labels if lb.choice not in ("tie", "both_bad")]
    if not votes:
        return None
    counts = Counter(_answer(lb) for lb in votes)
    answer, n = counts.most_common(1)[0]
    won = n == len(votes) if options.consensus == "unanimous" else n * 2 > len(votes)
    return next(lb for lb in votes if _answer(lb) == answer) if won else None


def training_rows(items: Iterable[ItemView] | None = None, options: ExportOptions | None = None) -> TrainingRows:
    """The labels as trl rows, each with where it came from.

    Provenance on every row: `item_id`, `drive` (or None), `annotator` ("consensus" for a
    consensus row), `annotators` (all who labelled the item), `item_agreement` (the share of the
    item's kept labels that give its most common answer; None with one label), `gold_item`,
    `gold_accuracy` of the annotator (None when unmeasured) and `passed_gold`.
    """
    options = options or ExportOptions()
    items = list(items if items is not None else preferences.all_items())
    member = drives.membership()
    settings = {d.name: d for d in drives.all_drives()} if member else {}
    gold = drives.gold_answers() if member else {}
    accuracy = preference_stats.gold_accuracy(items, gold)
    out = TrainingRows([], [])

    def measured(annotator: str) -> float | None:
        return accuracy[annotator]["gold_accuracy"] if annotator in accuracy else None

    def passes(annotator: str, threshold: float) -> bool:
        value = measured(annotator)
        return value is None or value >= threshold

    for item in items:
        drive = settings.get(member.get(item.id, ""))
        threshold = drive.gold_threshold if drive else 0.0
        kept = [lb for lb in item.labels if passes(lb.annotator, threshold) or not options.gold_filter]
        out.excluded_labels += len(item.labels) - len(kept)
        answers = Counter(_answer(lb) for lb in kept)
        provenance = {
            "item_id": item.id,
            "drive": drive.name if drive else None,
            "annotators": sorted(lb.annotator for lb in item.labels),
            "item_agreement": answers.most_common(1)[0][1] / len(kept) if len(kept) > 1 else None,
            "gold_item": item.id in gold,
        }
        if options.consensus is None:
            for label in kept:
                meta = {
                    **provenance,
                    "annotator": label.annotator,
                    "gold_accuracy": measured(label.annotator),
                    "passed_gold": passes(label.annotator, threshold),
                }
                _rows_for(item, label, meta, out)
            continue
        if not kept:
            continue
        if len(kept) < (drive.overlap if drive else 1):
            out.incomplete_items += 1
            continue
        winner = _winner(kept, options)
        if winner is None:
            out.split_items += 1
            continue
        meta = {**provenance, "annotator": "consensus", "gold_accuracy": None, "passed_gold": True}
        _rows_for(item, winner, meta, out)
    return out


def pairs_and_unpaired(items: Iterable[ItemView] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All kept labels as trl rows with provenance: (pairs, unpaired). See `training_rows`."""
    rows = training_rows(items)
    return rows.pairs, rows.unpaired


TRL_PAIR_COLUMNS = ("prompt", "chosen", "rejected")
TRL_UNPAIRED_COLUMNS = ("prompt", "completion", "label")
PROVENANCE_COLUMNS = (
    "item_id",
    "drive",
    "annotator",
    "annotators",
    "item_agreement",
    "gold_item",
    "gold_accuracy",
    "passed_gold",
)


def export(path: str | Path, fmt: str = "jsonl", options: ExportOptions | None = None) -> dict[str, Any]:
    """Write the labels in trl's format: jsonl | parquet | dataset (a `datasets` dir) | unpaired (jsonl).

    Each row carries its provenance columns next to trl's (trl's trainers drop columns they do
    not use). `options` chooses the labels: the gold filter, or one consensus row per item.
    """
    from datasets import Dataset

    found = training_rows(options=options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "unpaired":
        columns = (*TRL_UNPAIRED_COLUMNS, *PROVENANCE_COLUMNS)
        rows = [{k: r[k] for k in columns} for r in found.unpaired]
    elif fmt in ("jsonl", "parquet", "dataset"):
        columns = (*TRL_PAIR_COLUMNS, *PROVENANCE_COLUMNS)
        rows = [{k: r[k] for k in columns} for r in found.pairs]
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
    return {
        "path": str(path),
        "format": fmt,
        "rows": len(rows),
        "pairs": len(found.pairs),
        "unpaired": len(found.unpaired),
        "consensus": (options or ExportOptions()).consensus,
        "excluded_labels": found.excluded_labels,
        "split_items": found.split_items,
        "incomplete_items": found.incomplete_items,
    }


def left_out(report: dict[str, Any]) -> list[str]:
    """What `export` left out, as phrases ("3 items without a consensus"), for the CLI and the UI."""
    return [
        f"{report[key]} {what}"
        for key, what in (
            ("excluded_labels", "labels below their drive's gold threshold"),
            ("split_items", "items without a consensus"),
            ("incomplete_items", "items short of their drive's overlap"),
        )
        if report[key]
    ]


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


MAX_IMPORT_ROWS = 200_000
IMPORT_LIMITS = RowLimits(max_bytes=200_000_000, max_rows=MAX_IMPORT_ROWS, max_decoded_bytes=200_000_000)


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
        # rows of an arrow file are decoded by datasets: counted against the same decoded-size limits as a file
        try:
            yield from bounded((row for split in splits for row in split), path.name, IMPORT_LIMITS)
        except RowsError as error:
            raise PreferenceError(str(error)) from error
        return
    try:
        yield from read_rows(path, IMPORT_LIMITS, formats=(".jsonl", ".json", ".ndjson", ".parquet"))
    except RowsError as error:
        raise PreferenceError(str(error).replace(": use", ": use a datasets directory, or")) from error


def _objects(path: Path, errors: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a file that are JSON objects, by line number; the others are added to `errors`."""
    for number, record, error in _read_rows(path):
        if error or not isinstance(record, dict):
            errors.append({"line": number, "error": error or "is not an object"})
            continue
        yield number, record


def read_pairs(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """trl preference rows from a file, validated row by row: (rows as message lists, errors)."""
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for number, record in _objects(Path(path), errors):
        try:
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


# --- label drives: items to label, gold answers ------------------------------------------------


def parse_answer(text: str, n_responses: int) -> drives.GoldAnswer:
    """A known answer as people write it: A, B, tie, both bad, up, down, or a ranking 'B > A = C'."""
    raw = (text or "").strip()
    aliases = {choice.lower(): choice for choice in (*preferences.TWO_WAY, *THUMBS)} | {"both bad": "both_bad"}
    choice = aliases.get(raw.lower())
    if choice is not None:
        return drives.GoldAnswer(choice, preferences.ranking_for(choice, n_responses))
    if ">" in raw:
        return drives.GoldAnswer("ranking", preferences.parse_ranking(raw, n_responses))
    raise PreferenceError(
        f"cannot read the answer {text!r}: use A, B, tie, both bad, up, down or a ranking like 'B > A'"
    )


def _response_drafts(value: Any) -> list[ResponseDraft]:
    if not isinstance(value, list) or not value:
        raise PreferenceError("responses must be a list of 1 to 4 texts or {text, source} objects")
    drafts = []
    for entry in value:
        if isinstance(entry, str) and entry.strip():
            drafts.append(ResponseDraft(entry, source="imported"))
        elif isinstance(entry, dict) and isinstance(entry.get("text"), str) and entry["text"].strip():
            source = entry.get("source", "imported")
            drafts.append(ResponseDraft(entry["text"], source=str(source)[:256] or "imported"))
        else:
            raise PreferenceError("each response must be non-empty text or {text, source}")
    if len(drafts) > preferences.MAX_RESPONSES:
        raise PreferenceError(f"an item has 1 to {preferences.MAX_RESPONSES} responses, got {len(drafts)}")
    return drafts


@dataclass
class DriveImport:
    imported: int
    gold: int
    errors: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"imported": self.imported, "gold": self.gold, "errors": self.errors}


def import_drive_items(path: str | Path, drive: str, *, created_by: str | None = None) -> DriveImport:
    """Add unlabelled items to a drive from a file, row by row (bad rows are reported, not fatal).

    A row is {"prompt", "responses": [text or {text, source}], "gold"?: "A" | "B" | "tie" |
    "both bad" | "up" | "down" | "B > A = C"}; the responses are shown in random order and the
    gold answer names them as listed in the file. A trl pair row (prompt, chosen, rejected) is a
    gold item whose known answer is the chosen response.
    """
    drives.get(drive)  # a missing drive is one clear error, not one per row
    path = Path(path)
    imported = gold = 0
    errors: list[dict[str, Any]] = []
    for number, record in _objects(path, errors):
        try:
            answer_text = record.get("gold")
            if {"chosen", "rejected"} <= set(record):
                prompt, chosen, rejected = _pair_parts(record)
                drafts = [ResponseDraft(chosen[0].content, "imported"), ResponseDraft(rejected[0].content, "imported")]
                answer_text = "A"  # as listed: the chosen response first
            elif "responses" in record:
                prompt = _as_messages(record.get("prompt"), "user", "prompt")
                drafts = _response_drafts(record["responses"])
                if len(drafts) < 2:  # a drive compares: one response leaves nothing to prefer
                    raise PreferenceError(f"a drive item needs 2 to {preferences.MAX_RESPONSES} responses to compare")
            else:
                raise PreferenceError("needs prompt + responses (and gold, optional), or prompt + chosen + rejected")
            if answer_text is not None and not isinstance(answer_text, str):
                raise PreferenceError("gold must be text such as 'A' or 'B > A'")
            listed = parse_answer(answer_text, len(drafts)) if answer_text else None
        except PreferenceError as problem:
            errors.append({"line": number, "error": str(problem)})
            continue
        item = create_item(prompt, drafts, origin=f"drive:{drive}"[:128], created_by=created_by)
        answers = {}
        if listed is not None:  # the file names responses as listed; the item shows them shuffled
            if listed.choice in ("A", "B", "ranking"):
                shown = [_shown_position(item, drafts, i) for i in range(len(drafts))]
                groups = [sorted(shown[p] for p in group) for group in listed.ranking]
                choice = "AB"[groups[0][0]] if len(drafts) == 2 and len(groups) == 2 else "ranking"
                listed = drives.GoldAnswer(choice, groups)
            answers[item.id] = listed
            gold += 1
        drives.add_items(drive, [item.id], answers)
        imported += 1
    return DriveImport(imported, gold, errors)


def _shown_position(item: ItemView, drafts: list[ResponseDraft], listed_index: int) -> int:
    """Where the listed response ended up after shuffling (by text; identical texts keep order)."""
    text = drafts[listed_index].text
    same = [i for i, d in enumerate(drafts) if d.text == text]
    positions = [r.position for r in item.responses if r.text == text]
    return positions[same.index(listed_index)]
