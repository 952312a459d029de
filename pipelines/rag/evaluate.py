"""Measuring retrieval on a question set with known sources: recall@k and MRR per mode.

A hit is relevant when it comes from the question's `source` file (and from its `page`, when
one is given). recall@k: the share of questions with a relevant chunk in the top k. MRR: the
mean over questions of 1 / rank of the first relevant chunk within the top k (0 if none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from . import retrieval


def load_questions(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows {"question", "source", "page"?} and row errors {"line", "error"}."""
    rows, errors = [], []
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return [], [{"line": 0, "error": "the file is not UTF-8 text"}]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            errors.append({"line": number, "error": f"not valid JSON ({error.msg})"})
            continue
        if not isinstance(record, dict) or not isinstance(record.get("question"), str) or not record["question"].strip():
            errors.append({"line": number, "error": "needs a non-empty 'question'"})
            continue
        if not isinstance(record.get("source"), str) or not record["source"].strip():
            errors.append({"line": number, "error": "needs the 'source' file name the answer is in"})
            continue
        page = record.get("page")
        if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page < 1):
            errors.append({"line": number, "error": "'page' must be a positive whole number"})
            continue
        rows.append({"question": record["question"], "source": record["source"], "page": page})
    return rows, errors


def _relevant(hit: retrieval.Hit, row: dict[str, Any]) -> bool:
    if hit.chunk.source != row["source"]:
        return False
    return row.get("page") is None or hit.chunk.page == row["page"]


def evaluate(collection: str, rows: Sequence[dict[str, Any]], *, k: int = 5, modes: Sequence[str] = retrieval.MODES) -> dict[str, Any]:
    """{mode: {"recall@k": float, "mrr": float}} plus per-question ranks under "details"."""
    report: dict[str, Any] = {}
    details = [{"question": r["question"], "source": r["source"]} for r in rows]
    for mode in modes:
        found = reciprocal = 0.0
        for detail, row in zip(details, rows):
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
