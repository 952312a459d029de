"""Preference labels as training data: trl's formats out (files, the Hub) and in (imports).

Exports use trl's conversational explicit-prompt format (`prompt`, `chosen`, `rejected` as
message lists); rankings expand into every implied pair; ties, both-bad and thumbs go to an
unpaired KTO-style export (`prompt`, `completion`, `label`). Imports and prompt files are read
row by row within limits (`pipelines.rows`), so a bad row is reported, not fatal.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


from .messages import Message, normalise
from .rows import RowLimits, RowsError, read_rows
from . import preferences
from .errors import InvalidParameter
from .preferences import (
    ItemView,
    LETTERS,
    PreferenceError,
    ResponseDraft,
    THUMBS,
    create_item,
    submit_label,
)


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
    for item in items if items is not None else preferences.all_items():
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


MAX_IMPORT_ROWS = 200_000
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
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
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
