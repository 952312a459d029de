"""Instruction datasets: read JSONL/CSV/Parquet, detect the format, report bad rows by number.

Three shapes are understood -- (prompt, response), Alpaca (instruction, input, output) and
conversational `messages` -- and all become conversations. For training, each assistant turn
becomes one prompt/completion example in trl's conversational format, so the loss falls on the
assistant's tokens only (and on its end-of-turn token, so the model learns to stop).

A bad row never sinks the upload: it is reported with its row number and reason, and training
proceeds without it only if the user says so.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.engine.messages import ROLES, Message
from pipelines.errors import PlaygroundError
from pipelines.store import personal_data
from pipelines.store.rows import RowLimits, RowProblem, RowsError, loads, read_rows

MAX_FILE_BYTES = 50_000_000
MAX_ROWS = 100_000
MAX_CHARS_PER_ROW = 20_000
PREVIEW_ROWS = 5

PROMPT_KEYS = ("prompt", "question", "input_text")
RESPONSE_KEYS = ("response", "completion", "answer", "output_text")


class DataError(PlaygroundError, ValueError):
    """The file as a whole cannot be used (unreadable, wrong type, no usable rows)."""


@dataclass
class LoadedData:
    format: str  # "prompt-response" | "alpaca" | "messages"
    conversations: list[list[Message]]
    rows: list[int]  # the source row number of each conversation
    problems: list[RowProblem]
    total_rows: int
    preview: list[dict[str, Any]] = field(default_factory=list)

    @property
    def usable(self) -> int:
        return len(self.conversations)

    def summary(self) -> str:
        text = f"{self.total_rows} rows, format: {self.format}; {self.usable} usable"
        if self.problems:
            bad_rows = len({p.row for p in self.problems})
            text += f", {bad_rows} with problems"
        return text


LIMITS = RowLimits(max_bytes=MAX_FILE_BYTES, max_rows=MAX_ROWS)


def _records(path: Path, limits: RowLimits = LIMITS) -> Iterator[tuple[int, Any, str | None]]:
    """(row number, record or None, error) for every row of the file, within `limits` (pipelines.store.rows)."""
    try:
        yield from read_rows(path, limits)
    except RowsError as error:
        raise DataError(str(error)) from error


def _detect(keys: set[str]) -> str | None:
    if "messages" in keys:
        return "messages"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if any(k in keys for k in PROMPT_KEYS) and any(k in keys for k in RESPONSE_KEYS):
        return "prompt-response"
    return None


def text_field(
    record: dict[str, Any], key: str, row: int, problems: list[RowProblem], *, optional: bool = False
) -> str | None:
    """A text column of one row, or None with the row's problem noted (missing, empty, not text)."""
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if not optional:
            problems.append(RowProblem(row, key, "is missing or empty"))
        return None
    if not isinstance(value, str):
        problems.append(RowProblem(row, key, f"must be text, got {type(value).__name__}"))
        return None
    return value


def _conversation(fmt: str, record: dict[str, Any], row: int, problems: list[RowProblem]) -> list[Message] | None:
    before = len(problems)
    if fmt == "messages":
        raw = record.get("messages")
        if isinstance(raw, str):  # CSV cells hold JSON text
            try:
                raw = loads(raw)
            except ValueError:
                problems.append(RowProblem(row, "messages", "is not a JSON list of messages"))
                return None
        if not isinstance(raw, list) or not raw:
            problems.append(RowProblem(row, "messages", "must be a non-empty list of {role, content}"))
            return None
        messages = []
        for index, message in enumerate(raw):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                problems.append(RowProblem(row, "messages", f"message {index} needs a role of {', '.join(ROLES)}"))
                return None
            content = message.get("content")
            if not isinstance(content, str):
                problems.append(RowProblem(row, "messages", f"message {index} content must be text"))
                return None
            messages.append(Message(message["role"], content))
        if not any(m.role == "assistant" for m in messages):
            problems.append(RowProblem(row, "messages", "has no assistant message to learn from"))
            return None
    elif fmt == "alpaca":
        instruction = text_field(record, "instruction", row, problems)
        extra = text_field(record, "input", row, problems, optional=True)
        output = text_field(record, "output", row, problems)
        if len(problems) > before or instruction is None or output is None:
            return None
        question = f"{instruction}\n\n{extra}" if extra else instruction
        messages = [Message("user", question), Message("assistant", output)]
    else:
        prompt_key = next((k for k in PROMPT_KEYS if k in record), PROMPT_KEYS[0])
        response_key = next((k for k in RESPONSE_KEYS if k in record), RESPONSE_KEYS[0])
        prompt = text_field(record, prompt_key, row, problems)
        response = text_field(record, response_key, row, problems)
        if len(problems) > before or prompt is None or response is None:
            return None
        messages = [Message("user", prompt), Message("assistant", response)]
    size = sum(len(m.content) for m in messages)
    if size > MAX_CHARS_PER_ROW:
        problems.append(RowProblem(row, None, f"is {size:,} characters long; the limit is {MAX_CHARS_PER_ROW:,}"))
        return None
    return messages


def load_file(path: str | Path) -> LoadedData:
    """Read and validate a dataset file. Raises DataError only when nothing usable can be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path.name}")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path.name} is {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    problems: list[RowProblem] = []
    conversations: list[list[Message]] = []
    rows: list[int] = []
    preview: list[dict[str, Any]] = []
    fmt: str | None = None
    total = 0
    for number, record, error in _records(path):
        total += 1
        if error:
            problems.append(RowProblem(number, None, error))
            continue
        if not isinstance(record, dict):
            problems.append(RowProblem(number, None, "is not an object with named fields"))
            continue
        if fmt is None:
            fmt = _detect(set(record))
            if fmt is None:
                raise DataError(
                    f"cannot tell the format of {path.name} from its fields {sorted(record)}: expected "
                    "prompt+response, instruction+output (Alpaca), or messages"
                )
        if len(preview) < PREVIEW_ROWS:
            preview.append(
                {k: (v if not isinstance(v, str) or len(v) < 300 else v[:300] + "…") for k, v in record.items()}
            )
        conversation = _conversation(fmt, record, number, problems)
        if conversation is not None:
            conversations.append(conversation)
            rows.append(number)
    if fmt is None:
        raise DataError(f"{path.name} has no readable rows" + (f" ({problems[0]})" if problems else ""))
    return LoadedData(fmt, conversations, rows, problems, total, preview)


def personal_data_rows(data: LoadedData) -> dict[str, Any]:
    """What personal data the usable rows hold (pipelines/store/personal_data.py): the row numbers,
    the counts per kind and masked examples. A model fine-tuned on a row can repeat it verbatim."""
    rows: list[int] = []
    findings: list[personal_data.Finding] = []
    for row, conversation in zip(data.rows, data.conversations, strict=True):
        found = personal_data.scan("\n".join(message.content for message in conversation))
        if found:
            rows.append(row)
            findings += found
    return {"rows": rows, **personal_data.summary(findings)}


def check_lengths(data: LoadedData, tokenizer: Any, max_length: int) -> list[RowProblem]:
    """Rows whose rendered conversation is longer than `max_length` tokens (they would be cut)."""
    problems = []
    for row, conversation in zip(data.rows, data.conversations, strict=False):
        ids = tokenizer.apply_chat_template([m.to_json() for m in conversation], tokenize=True, return_dict=False)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        if len(ids) > max_length:
            problems.append(
                RowProblem(row, None, f"is {len(ids)} tokens; max length is {max_length} (it would be cut)")
            )
    return problems


def accept(data: LoadedData, problems: Sequence[RowProblem], *, skip_bad_rows: bool) -> list[list[Message]]:
    """The conversations to train on; bad rows are dropped only with the user's consent."""
    if problems and not skip_bad_rows:
        listed = "; ".join(str(p) for p in problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise DataError(
            f"{len({p.row for p in problems})} rows have problems ({listed}). Fix them, or choose to skip them."
        )
    bad = {p.row for p in problems}
    kept = [c for row, c in zip(data.rows, data.conversations, strict=False) if row not in bad]
    if not kept:
        raise DataError("no usable rows are left to train on")
    return kept


def to_examples(conversations: Sequence[Sequence[Message]]) -> list[dict[str, Any]]:
    """One prompt/completion example per assistant turn (trl's conversational format)."""
    examples = []
    for conversation in conversations:
        for index, message in enumerate(conversation):
            if message.role == "assistant" and index > 0:
                examples.append(
                    {
                        "prompt": [m.to_json() for m in conversation[:index]],
                        "completion": [message.to_json()],
                    }
                )
    return examples


def split(conversations: Sequence[Any], eval_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded train/eval split by conversation (no conversation lands in both)."""
    items = list(conversations)
    if eval_fraction <= 0 or len(items) < 4:
        return items, []
    random.Random(seed).shuffle(items)
    n_eval = max(1, round(len(items) * eval_fraction))
    return items[n_eval:], items[:n_eval]
