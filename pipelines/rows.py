"""Rows of an uploaded data file, read within bounds whatever the file claims.

One reader for every tab and command that takes a table of rows (fine-tuning data, preference
pairs, prompt sets, retrieval questions, reasoning problems): JSON Lines, a JSON list, CSV/TSV or
Parquet. Uploads are hostile until measured, so the bounds are checked before the work they bound:

- the file's size before it is read;
- a Parquet file's row count and uncompressed size from its metadata, before any row is decoded
  (a 46 KB file can hold 5 M dictionary-encoded rows), and then rows in batches;
- each row's length before it is parsed, and JSON nesting (a row nested 100,000 deep is one bad
  row with a clear reason, not a RecursionError that sinks the file);
- the number of rows, as the file is read.

A problem with one row is yielded as that row's error; a problem with the file is a RowsError.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import PlaygroundError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
MAX_DEPTH = 64  # message lists are 3 levels deep; nothing a person writes by hand needs 64


class RowsError(PlaygroundError, ValueError):
    """The file as a whole cannot be read within its limits; the message says why."""


@dataclass(frozen=True)
class RowLimits:
    max_bytes: int = 50_000_000
    max_rows: int = 100_000
    max_row_chars: int = 1_000_000
    max_depth: int = MAX_DEPTH


Row = tuple[int, Any, "str | None"]  # (row or line number, record or None, error or None)


def depth(value: Any) -> int:
    """Nesting depth of parsed JSON, measured without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with a nesting limit: a ValueError that says so instead of a RecursionError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    if depth(value) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return value


def _json_error(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg} at column {error.colno})"
    return str(error)


def _text(path: Path, limits: RowLimits) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RowsError(f"{path.name} is not UTF-8 text (byte {error.start})") from error


def _jsonl(path: Path, limits: RowLimits) -> Iterator[Row]:
    for number, line in enumerate(_text(path, limits).splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > limits.max_row_chars:
            yield number, None, f"is {len(line):,} characters long; the limit is {limits.max_row_chars:,}"
            continue
        try:
            yield number, loads(line, limits.max_depth), None
        except ValueError as error:
            yield number, None, _json_error(error)


def _json_list(path: Path, limits: RowLimits) -> Iterator[Row]:
    text = _text(path, limits)
    if not text.lstrip().startswith("["):  # a .json file holding one object per line
        yield from _jsonl(path, limits)
        return
    try:
        items = loads(text, limits.max_depth + 1)  # the list itself is one level
    except ValueError as error:
        raise RowsError(f"{path.name} is not valid JSON ({_json_error(error)})") from error
    yield from ((number, item, None) for number, item in enumerate(items, start=1))


def _csv(path: Path, limits: RowLimits, tab: bool) -> Iterator[Row]:
    csv.field_size_limit(limits.max_row_chars)
    reader = csv.DictReader(io.StringIO(_text(path, limits), newline=""), dialect=csv.excel_tab if tab else csv.excel)
    try:
        if not reader.fieldnames:
            raise RowsError(f"{path.name} has no header row")
        for number, row in enumerate(reader, start=1):
            if None in row:  # more cells than header columns
                yield number, None, "has more cells than the header has columns"
                continue
            yield number, {k: (v if v != "" else None) for k, v in row.items()}, None
    except csv.Error as error:
        raise RowsError(f"{path.name} is not valid CSV ({error})") from error


def _parquet(path: Path, limits: RowLimits) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        meta = file.metadata
        expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise RowsError(f"{path.name} is not a readable Parquet file ({str(error)[:160]})") from error
    if meta.num_rows > limits.max_rows:
        raise RowsError(f"{path.name} has {meta.num_rows:,} rows; the limit is {limits.max_rows:,}")
    if expanded > 4 * limits.max_bytes:
        raise RowsError(
            f"{path.name} expands to {expanded / 1e6:,.0f} MB when read; the limit is {4 * limits.max_bytes / 1e6:,.0f} MB"
        )
    number = 0
    try:
        for batch in file.iter_batches(batch_size=1_000):
            for row in batch.to_pylist():
                number += 1
                too_deep = depth(row) > limits.max_depth
                yield (
                    number,
                    None if too_deep else row,
                    f"nested deeper than {limits.max_depth} levels" if too_deep else None,
                )
    except RowsError:
        raise
    except Exception as error:  # noqa: BLE001
        raise RowsError(f"{path.name} is not a readable Parquet file ({str(error)[:160]})") from error


def read_rows(
    path: str | Path, limits: RowLimits = RowLimits(), *, formats: tuple[str, ...] = tuple(FORMATS)
) -> Iterator[Row]:
    """(number, record, error) for every row of the file, within `limits`; RowsError for the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise RowsError(f"unsupported file type {suffix or '(none)'}: use {', '.join(formats)}")
    try:
        size = path.stat().st_size
    except OSError as error:
        raise RowsError(f"{path.name} cannot be read") from error
    if size > limits.max_bytes:
        raise RowsError(f"{path.name} is {size / 1e6:,.1f} MB; the limit is {limits.max_bytes / 1e6:,.0f} MB")
    kind = FORMATS[suffix]
    rows = {"jsonl": _jsonl, "json": _json_list, "parquet": _parquet}.get(kind)
    source = rows(path, limits) if rows else _csv(path, limits, tab=kind == "tsv")
    for count, row in enumerate(source, start=1):
        if count > limits.max_rows:
            raise RowsError(f"{path.name} has more than {limits.max_rows:,} rows")
        yield row
