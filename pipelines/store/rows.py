"""Rows of an uploaded data file, read within bounds of what they decode to, whatever the file claims.

One reader for every tab and command that takes a table of rows (fine-tuning data, preference
pairs, prompt sets, retrieval questions, reasoning problems): JSON Lines, a JSON list, CSV/TSV or
Parquet. Uploads are hostile until measured, and what a file *claims* (its size, a Parquet file's
metadata) says little about what it becomes in memory: a 1 KB Parquet file whose 100,000 rows
share one dictionary entry of 1 MB decodes to 100 GB; a 49 MB JSON list of `{}` is 16 million
Python dicts. So every reader counts as it goes, and stops before the cost is paid:

- the file's size, before it is read;
- a Parquet file's row count, columns, nesting and uncompressed size from its metadata, and then
  its **decoded** size batch by batch *before* the batch becomes Python objects (byte columns are
  read as dictionaries, so a shared value is counted once per row that uses it but held once);
- JSON and CSV as streams: each line or record's length before it is parsed, JSON nesting while
  parsing (a row nested 100,000 deep is one bad row with a clear reason, not a RecursionError
  that sinks the file), the row cap while parsing, the columns of a CSV header;
- the decoded size of all rows together (`RowLimits.max_decoded_bytes`): text bytes plus
  `VALUE_COST` per value, a lower bound on what the rows cost as Python objects.

A problem with one row is yielded as that row's error; a problem with the file is a RowsError.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipelines.errors import PlaygroundError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
MAX_DEPTH = 64  # message lists are 3 levels deep; nothing a person writes by hand needs 64
VALUE_COST = 64  # bytes counted for each decoded value (a Python object and the slot that holds it)


class RowsError(PlaygroundError, ValueError):
    """The file as a whole cannot be read within its limits; the message says why."""


@dataclass(frozen=True)
class RowLimits:
    max_bytes: int = 50_000_000  # the file on disk
    max_rows: int = 100_000
    max_row_chars: int = 1_000_000  # one line or record (JSON rows: its text and two per value)
    max_depth: int = MAX_DEPTH
    max_columns: int = 1_000  # a CSV header, a Parquet schema, the keys of one JSON object
    max_decoded_bytes: int = 100_000_000  # all rows together once decoded (see `measure`)


Row = tuple[int, Any, "str | None"]  # (row or line number, record or None, error or None)


@dataclass(frozen=True)
class RowProblem:
    """What is wrong with one row, by its number (and column), as every reader reports it."""

    row: int  # 1-based: the line of a JSONL file, the data row of a CSV/Parquet file
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column!r}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Size:
    depth: int
    values: int  # every container and scalar
    text: int  # characters of strings and keys
    keys: int  # most keys of one object: its columns

    @property
    def decoded(self) -> int:
        return self.text + VALUE_COST * self.values

    @property
    def chars(self) -> int:
        """A lower bound on the row's length as JSON text: its strings, and a character per value."""
        return self.text + self.values


def measure(value: Any) -> Size:
    """Nesting, value count and text of parsed data, measured without recursion."""
    deepest = values = text = keys = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        values += 1
        if isinstance(item, dict):
            deepest, keys = max(deepest, level), max(keys, len(item))
            text += sum(len(key) for key in item if isinstance(key, str))
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
        elif isinstance(item, (str, bytes)):
            text += len(item)
    return Size(deepest, values, text, keys)


def depth(value: Any) -> int:
    """Nesting depth of parsed JSON, measured without recursion."""
    return measure(value).depth


def loads(text: str | bytes, max_depth: int = MAX_DEPTH, *, source: str | None = None) -> Any:
    """json.loads with a nesting limit: a RowsError that says what is wrong (never a RecursionError),
    naming `source` ("preset.json is not valid JSON …") when given."""

    def refused(reason: str) -> RowsError:
        return RowsError(f"{source} is {reason}" if source else reason)

    try:
        value = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as error:
        raise refused(f"not UTF-8 text (byte {error.start})") from None
    except RecursionError:
        raise refused(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as error:
        raise refused(f"not valid JSON ({error.msg}, line {error.lineno})") from error
    if depth(value) > max_depth:
        raise refused(f"nested deeper than {max_depth} levels")
    return value


def _json_error(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg} at column {error.colno})"
    return str(error)


class _Budget:
    """The decoded size of every row so far, against the file's limit."""

    def __init__(self, name: str, limits: RowLimits) -> None:
        self.name, self.limits, self.used = name, limits, 0

    def spend(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limits.max_decoded_bytes:
            raise RowsError(
                f"{self.name} decodes to more than {self.limits.max_decoded_bytes / 1e6:,.0f} MB of rows; "
                "the limit is that much (split the file, or shorten its texts)"
            )


def _row_problem(size: Size, limits: RowLimits) -> str | None:
    """Why one parsed row is refused, or None."""
    if size.depth > limits.max_depth:
        return f"nested deeper than {limits.max_depth} levels"
    if size.chars > limits.max_row_chars:
        return f"is over {limits.max_row_chars:,} characters long"
    if size.keys > limits.max_columns:
        return f"has {size.keys:,} keys in one object; the limit is {limits.max_columns:,}"
    return None


def _checked(number: int, value: Any, limits: RowLimits, budget: _Budget) -> Row:
    size = measure(value)
    budget.spend(size.decoded)
    problem = _row_problem(size, limits)
    return (number, None, problem) if problem else (number, value, None)


def _open_text(path: Path) -> IO[str]:
    # newline="" keeps \r inside CSV quotes; JSON Lines split on \n (and \r\n) only
    return open(path, encoding="utf-8-sig", errors="strict", newline="")


def _ended(line: str) -> bool:
    return line.endswith(("\n", "\r"))


def _lines(handle: IO[str], limit: int) -> Iterator[tuple[int, str | None, int]]:
    """(line number, line or None when over `limit` characters, its length without the line end).

    Never holds more than `limit` characters of a line: the rest of an over-long one is read and dropped.
    """
    number = 0
    while True:
        line = handle.readline(limit + 2)
        if not line:
            return
        number += 1
        length = len(line.rstrip("\r\n"))
        if length <= limit:
            yield number, line, length
            continue
        while not _ended(line):
            line = handle.readline(1 << 20)
            length += len(line.rstrip("\r\n"))
            if not line:
                break
        yield number, None, length


def _not_utf8(path: Path, error: UnicodeDecodeError) -> RowsError:
    return RowsError(f"{path.name} is not UTF-8 text (a byte {error.object[error.start]:#04x} is not UTF-8)")


def _jsonl(path: Path, limits: RowLimits, budget: _Budget) -> Iterator[Row]:
    try:
        with _open_text(path) as handle:
            for number, line, length in _lines(handle, limits.max_row_chars):
                if line is None:
                    yield number, None, f"is {length:,} characters long; the limit is {limits.max_row_chars:,}"
                    continue
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except RecursionError:
                    yield number, None, f"nested deeper than {limits.max_depth} levels"
                    continue
                except ValueError as error:
                    yield number, None, _json_error(error)
                    continue
                yield _checked(number, value, limits, budget)
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error


def _first_text(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4096)
    return head.decode("utf-8-sig", errors="replace").lstrip()


def _json_list(path: Path, limits: RowLimits, budget: _Budget) -> Iterator[Row]:
    if not _first_text(path).startswith("["):  # a .json file holding one object per line
        yield from _jsonl(path, limits, budget)
        return
    import ijson

    number, item, level = 0, None, 0
    try:
        with open(path, "rb") as handle:
            if handle.read(3) != b"\xef\xbb\xbf":  # a byte-order mark is skipped, as for the other formats
                handle.seek(0)
            for _prefix, kind, value in ijson.parse(handle, use_float=True):
                if level == 0:  # the list itself
                    if kind != "start_array":
                        raise RowsError(f"{path.name} is not a JSON list")
                    level = 1
                    continue
                if item is None:
                    if kind == "end_array":  # the list's own end
                        level = 0
                        continue
                    number += 1
                    if number > limits.max_rows:
                        raise RowsError(f"{path.name} has more than {limits.max_rows:,} rows")
                    item = _Stream(limits)
                item.event(kind, value)
                if item.done:
                    if item.problem:
                        budget.spend(item.size().decoded)
                        yield number, None, item.problem
                    else:
                        yield _checked(number, item.value, limits, budget)
                    item = None
    except ijson.JSONError as error:
        raise RowsError(f"{path.name} is not valid JSON ({str(error)[:160]})") from error
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error


class _Stream:
    """One element of a streamed JSON list: built from parser events, stopped at the row's limits.

    Once a limit is passed the rest of the element is skipped (counted, never built), so a row
    nested 100,000 deep or holding a million values costs no more than its limit.
    """

    def __init__(self, limits: RowLimits) -> None:
        import ijson

        self.limits, self.builder = limits, ijson.ObjectBuilder()
        self.depth = self.deepest = self.values = self.text = self.keys = 0
        self.counts: list[int] = []  # keys so far of each open container (lists count none)
        self.problem: str | None = None
        self.done = False

    def event(self, kind: str, value: Any) -> None:
        if kind == "map_key":
            self.counts[-1] += 1
            self.keys = max(self.keys, self.counts[-1])
        elif kind in ("end_map", "end_array"):
            self.depth -= 1
            self.counts.pop()
        else:
            self.values += 1
            if kind in ("start_map", "start_array"):
                self.depth += 1
                self.deepest = max(self.deepest, self.depth)
                self.counts.append(0)
        if isinstance(value, str):
            self.text += len(value)
        self.done = self.depth == 0
        if self.problem is None:
            self.problem = _row_problem(self.size(), self.limits)
            if self.problem is None:
                self.builder.event(kind, value)

    def size(self) -> Size:
        return Size(self.deepest, self.values, self.text, self.keys)

    @property
    def value(self) -> Any:
        return self.builder.value


def _records(handle: IO[str], limits: RowLimits, name: str) -> Iterator[str]:
    """Physical lines for the csv module, refusing any record longer than the row limit."""
    pending = quotes = 0
    for number, line, length in _lines(handle, limits.max_row_chars):
        pending += length
        if line is None or pending > limits.max_row_chars:
            raise RowsError(f"{name}: the record on line {number} is over {limits.max_row_chars:,} characters")
        yield line
        quotes += line.count('"')
        if _ended(line) and quotes % 2 == 0:  # outside quotes: the record ends here
            pending = quotes = 0


def _csv(path: Path, limits: RowLimits, budget: _Budget, tab: bool) -> Iterator[Row]:
    csv.field_size_limit(limits.max_row_chars)
    try:
        with _open_text(path) as handle:
            reader = csv.reader(_records(handle, limits, path.name), dialect=csv.excel_tab if tab else csv.excel)
            header = next((cells for cells in reader if cells), None)
            if not header:
                raise RowsError(f"{path.name} has no header row")
            if len(header) > limits.max_columns:
                raise RowsError(f"{path.name} has {len(header):,} columns; the limit is {limits.max_columns:,}")
            for number, cells in enumerate((cells for cells in reader if cells), start=1):
                budget.spend(sum(map(len, cells)) + VALUE_COST * (len(cells) + 1))
                if len(cells) > len(header):
                    yield number, None, "has more cells than the header has columns"
                    continue
                cells += [""] * (len(header) - len(cells))
                yield number, {k: (v if v != "" else None) for k, v in zip(header, cells, strict=False)}, None
    except csv.Error as error:
        raise RowsError(f"{path.name} is not valid CSV ({error})") from error
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from error


def _arrow_cost(array: Any) -> int:
    """What an Arrow array becomes as Python values, computed from lengths alone (nothing decoded)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind, count = array.type, len(array)
    own = VALUE_COST * count
    if pa.types.is_dictionary(kind):
        if not (pa.types.is_string(kind.value_type) or pa.types.is_binary(kind.value_type)):
            return own
        lengths = pc.take(pc.binary_length(array.dictionary), array.indices)
        return own + int(pc.sum(lengths).as_py() or 0)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return own + int(pc.sum(pc.binary_length(array)).as_py() or 0)
    if pa.types.is_large_binary(kind) or pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        return own + int(pc.sum(pc.binary_length(array)).as_py() or 0)
    if pa.types.is_map(kind):
        return own + _arrow_cost(array.keys) + _arrow_cost(array.items)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return own + _arrow_cost(array.flatten())
    if pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind):
        return own + _arrow_cost(array.flatten())
    if pa.types.is_struct(kind):
        return own + sum(_arrow_cost(array.field(i)) for i in range(kind.num_fields))
    return own


def _arrow_depth(kind: Any) -> int:
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return 1 + max((_arrow_depth(kind.field(i).type) for i in range(kind.num_fields)), default=0)
    if pa.types.is_map(kind):
        return 2 + max(_arrow_depth(kind.key_type), _arrow_depth(kind.item_type))
    if hasattr(kind, "value_type") and not pa.types.is_dictionary(kind):  # lists of every kind
        return 1 + _arrow_depth(kind.value_type)
    return 0


def _parquet(path: Path, limits: RowLimits, budget: _Budget) -> Iterator[Row]:
    import pyarrow.parquet as pq

    def unreadable(error: Exception) -> RowsError:
        return RowsError(f"{path.name} is not a readable Parquet file ({str(error)[:160]})")

    try:
        meta = pq.ParquetFile(path).metadata
        expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        leaves = [meta.schema.column(i) for i in range(meta.num_columns)]
        # byte columns stay dictionaries while they are counted: a value shared by many rows is held once
        as_dictionary = [leaf.path for leaf in leaves if leaf.physical_type == "BYTE_ARRAY"]
        file = pq.ParquetFile(path, read_dictionary=as_dictionary)
        schema = file.schema_arrow
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise unreadable(error) from error
    if meta.num_rows > limits.max_rows:
        raise RowsError(f"{path.name} has {meta.num_rows:,} rows; the limit is {limits.max_rows:,}")
    if len(schema) > limits.max_columns or len(leaves) > 10 * limits.max_columns:
        raise RowsError(f"{path.name} has {len(schema):,} columns; the limit is {limits.max_columns:,}")
    deepest = 1 + max((_arrow_depth(field.type) for field in schema), default=0)
    if deepest > limits.max_depth:
        raise RowsError(f"{path.name}'s columns are nested {deepest} levels deep; the limit is {limits.max_depth}")
    if expanded > limits.max_decoded_bytes:
        raise RowsError(
            f"{path.name} expands to {expanded / 1e6:,.0f} MB when read; "
            f"the limit is {limits.max_decoded_bytes / 1e6:,.0f} MB"
        )
    number = 0
    try:
        # one row group at a time: a batch spanning two would merge their dictionaries, which nested columns cannot
        batches = (
            batch for group in range(meta.num_row_groups) for batch in file.iter_batches(256, row_groups=[group])
        )
        for batch in batches:
            budget.spend(sum(_arrow_cost(column) for column in batch.columns))  # before any row is decoded
            for row in batch.to_pylist():
                number += 1
                problem = _row_problem(measure(row), limits)
                yield (number, None, problem) if problem else (number, row, None)
    except RowsError:
        raise
    except Exception as error:  # noqa: BLE001
        raise unreadable(error) from error


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
    budget = _Budget(path.name, limits)
    if kind in ("csv", "tsv"):
        source = _csv(path, limits, budget, tab=kind == "tsv")
    else:
        source = {"jsonl": _jsonl, "json": _json_list, "parquet": _parquet}[kind](path, limits, budget)
    for count, row in enumerate(source, start=1):
        if count > limits.max_rows:
            raise RowsError(f"{path.name} has more than {limits.max_rows:,} rows")
        yield row


def bounded(rows: Iterator[Any], name: str, limits: RowLimits = RowLimits()) -> Iterator[Row]:
    """Rows that another reader decodes (a saved datasets directory), counted against the same limits."""
    budget = _Budget(name, limits)
    for number, row in enumerate(rows, start=1):
        if number > limits.max_rows:
            raise RowsError(f"{name} has more than {limits.max_rows:,} rows")
        yield _checked(number, row, limits, budget)
