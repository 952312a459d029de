"""Measuring retrieval on a question set with known sources: recall@k and MRR per mode.

A hit is relevant when it comes from the question's `source` file (and from its `page`, when
one is given). recall@k: the share of questions with a relevant chunk in the top k. MRR: the
mean over questions of 1 / rank of the first relevant chunk within the top k (0 if none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.errors import InvalidParameter
from pipelines.rag import retrieval
from pipelines.store.rows import RowLimits, RowsError, read_rows

MAX_QUESTIONS = 1_000  # each costs three retrievals (one per mode): ~45 s of a 2-core CPU for 1,000
MAX_QUESTION_CHARS = 2_000
MAX_FILE_BYTES = 5_000_000
LIMITS = RowLimits(max_bytes=MAX_FILE_BYTES, max_rows=MAX_QUESTIONS, max_row_chars=4 * MAX_QUESTION_CHARS)


def load_questions(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows {"question", "source", "page"?} and row errors {"line", "error"}, within LIMITS."""
    rows, errors = [], []
    try:
        for number, record, error in read_rows(path, LIMITS, formats=(".jsonl", ".json", ".ndjson")):
            if error:
                errors.append({"line": number, "error": error})
                continue
            if (
                not isinstance(record, dict)
                or not isinstance(record.get("question"), str)
                or not record["question"].strip()
            ):
                errors.append({"line": number, "error": "needs a non-empty 'question'"})
                continue
            if len(record["question"]) > MAX_QUESTION_CHARS:
                errors.append({"line": number, "error": f"'question' is over {MAX_QUESTION_CHARS:,} characters"})
                continue
            if not isinstance(record.get("source"), str) or not record["source"].strip():
                errors.append({"line": number, "error": "needs the 'source' file name the answer is in"})
                continue
            page = record.get("page")
            if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page < 1):
                errors.append({"line": number, "error": "'page' must be a positive whole number"})
                continue
            rows.append({"question": record["question"], "source": record["source"][:500], "page": page})
    except RowsError as error:
        return [], [{"line": 0, "error": str(error)}]
    return rows, errors


def _relevant(hit: retrieval.Hit, row: dict[str, Any]) -> bool:
    if hit.chunk.source != row["source"]:
        return False
    return row.get("page") is None or hit.chunk.page == row["page"]


def evaluate(
    collection: str,
    rows: Sequence[dict[str, Any]],
    *,
    k: int = 5,
    modes: Sequence[str] = retrieval.MODES,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """{mode: {"recall@k": float, "mrr": float}} plus per-question ranks under "details".

    `should_stop` is asked before each retrieval; a stopped run returns None (a half-measured run
    would mix modes unevenly, so nothing is reported).
    """
    if len(rows) > MAX_QUESTIONS:
        raise InvalidParameter("questions", f"at most {MAX_QUESTIONS:,} questions per evaluation, got {len(rows):,}")
    report: dict[str, Any] = {}
    details = [{"question": r["question"], "source": r["source"]} for r in rows]
    for mode in modes:
        found = reciprocal = 0.0
        for detail, row in zip(details, rows, strict=False):
            if should_stop and should_stop():
                return None
            hits = retrieval.search(collection, row["question"], k=k, mode=mode)
            rank = next((h.rank for h in hits if _relevant(h, row)), None)
            detail[mode] = rank
            if rank is not None:
                found += 1
                reciprocal += 1 / rank
        n = max(len(rows), 1)
        report[mode] = {f"recall@{k}": found / n, "mrr": reciprocal / n}
    report["n"] = len(rows)
    report["details"] = details
    return report
