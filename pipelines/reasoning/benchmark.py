"""Accuracy of each strategy over a problem set, with per-item detail, saved as a reloadable run.

Problems are JSONL `{"question", "answer"}` with a numeric answer (written as a number or as
text such as "1,750"). A run is saved to `<data>/reasoning/runs/<id>.json` when it ends, and also
when it is stopped, so partial work is kept and labelled as such.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import knobs
from pipelines.config import get_settings
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.reasoning import extract, solve
from pipelines.reasoning.strategies import PROBLEMS_FILE, Strategy
from pipelines.store.files import write_atomic
from pipelines.store.rows import RowLimits, RowsError, read_rows

MAX_PROBLEMS = 5000
MAX_FILE_BYTES = 20_000_000


@dataclass(frozen=True)
class BenchmarkSpec:
    """How much of a problem set a benchmark run answers."""

    limit: int = knob(
        10,
        help="only the first N problems",
        label="At most this many problems",
        info="all three strategies on 10 problems take ~5 min on a 2-core CPU",
        low=1,
        high=MAX_PROBLEMS,
        step=1,
        slider=False,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


def runs_dir() -> Path:
    return get_settings().data_dir / "reasoning" / "runs"


def load_problems(path: str | Path | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows {"question", "answer": float} and row errors {"line", "error"}; the bundled set by default."""
    path = Path(path) if path else PROBLEMS_FILE
    limits = RowLimits(max_bytes=MAX_FILE_BYTES, max_rows=10 * MAX_PROBLEMS, max_row_chars=4 * solve.MAX_QUESTION_CHARS)
    rows, errors = [], []
    try:
        for number, item, error in read_rows(path, limits, formats=(".jsonl", ".json", ".ndjson")):
            if error:
                errors.append({"line": number, "error": error})
                continue
            if not isinstance(item, dict):
                errors.append({"line": number, "error": "expected an object with 'question' and 'answer'"})
                continue
            question, answer = item.get("question"), item.get("answer")
            if not isinstance(question, str) or not question.strip():
                errors.append({"line": number, "error": "'question' must be non-empty text"})
                continue
            if len(question) > solve.MAX_QUESTION_CHARS:
                errors.append({"line": number, "error": f"'question' is over {solve.MAX_QUESTION_CHARS:,} characters"})
                continue
            gold = extract.from_value(answer) if not isinstance(answer, str) else extract.parse_number(answer)
            if gold is None:
                errors.append({"line": number, "error": f"'answer' must be a number, got {answer!r}"[:200]})
                continue
            rows.append({"question": question.strip(), "answer": gold})
            if len(rows) >= MAX_PROBLEMS:
                errors.append({"line": number, "error": f"only the first {MAX_PROBLEMS:,} problems are used"})
                break
    except RowsError as error:
        return [], [{"line": 0, "error": str(error)}]
    return rows, errors


def summarise(items: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for key in keys:
        done = [item["results"][key] for item in items if key in item.get("results", {})]
        n = len(done)
        out[key] = {
            "accuracy": round(sum(bool(r["correct"]) for r in done) / n, 4) if n else 0.0,
            "correct": sum(bool(r["correct"]) for r in done),
            "n": n,
            "mean_tokens": round(sum(r["tokens"] for r in done) / n, 1) if n else 0.0,
            "mean_seconds": round(sum(r["seconds"] for r in done) / n, 3) if n else 0.0,
            "no_answer": sum(r["answer"] is None for r in done),
        }
    return out


def iter_run(
    handle: ModelHandle,
    problems: Sequence[dict[str, Any]],
    strategies: Sequence[Strategy],
    params: SamplingParams,
    *,
    samples: int = 1,
    adapter: str | None = None,
    data_name: str = "problems.jsonl",
    token_cap: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Solve every problem with every strategy, yielding the run after each problem.

    The run is saved when it ends -- also when the consumer stops iterating (a Stop button), in
    which case it is saved as incomplete with the problems done so far.
    """
    if not problems:
        raise InvalidParameter("problems", "no problems to run")
    keys = [s.key for s in strategies]
    record: dict[str, Any] = {
        "id": time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3),
        "created": time.time(),
        "model": handle.name,
        "adapter": adapter,
        "data": data_name,
        "strategies": keys,
        "samples": samples,
        "params": params.to_dict(),
        "total": len(problems),
        "complete": False,
        "items": [],
        "summary": summarise([], keys),
    }
    started = time.monotonic()
    try:
        for problem in problems:
            if should_stop and should_stop():
                break
            results = solve.solve(
                handle,
                problem["question"],
                strategies,
                params,
                samples=samples,
                gold=problem["answer"],
                adapter=adapter,
                token_cap=token_cap,
                should_stop=should_stop,
            )
            record["items"].append(
                {
                    "question": problem["question"],
                    "answer": problem["answer"],
                    "results": {
                        r.strategy: {
                            "answer": r.answer,
                            "correct": bool(r.correct),
                            "tokens": r.mean_tokens,
                            "seconds": round(r.seconds, 3),
                            "output": r.output,
                            "program": r.program,
                            "votes": r.votes,
                            "error": (r.samples[0].run or {}).get("error"),
                        }
                        for r in results
                    },
                }
            )
            record["summary"] = summarise(record["items"], keys)
            yield record
    finally:
        record["complete"] = len(record["items"]) == len(problems)
        record["seconds"] = round(time.monotonic() - started, 2)
        if record["items"]:
            save(record)


def run(
    handle: ModelHandle,
    problems: Sequence[dict[str, Any]],
    strategies: Sequence[Strategy],
    params: SamplingParams,
    *,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """The whole run at once (CLI); `progress(done, total, record)` after each problem."""
    record: dict[str, Any] = {}
    for record in iter_run(handle, problems, strategies, params, **kwargs):
        if progress:
            progress(len(record["items"]), len(problems), record)
    return record


def save(record: dict[str, Any]) -> Path:
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{record['id']}.json"
    return write_atomic(target, json.dumps(record, indent=1))


def list_runs() -> list[dict[str, Any]]:
    """Saved runs, newest first, with their summaries (unreadable files are skipped)."""
    out = []
    for path in sorted(runs_dir().glob("*.json"), reverse=True):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            out.append(
                {
                    k: data.get(k)
                    for k in (
                        "id",
                        "created",
                        "model",
                        "adapter",
                        "data",
                        "strategies",
                        "samples",
                        "total",
                        "complete",
                        "summary",
                    )
                }
                | {"done": len(data.get("items", []))}
            )
        except (OSError, ValueError):
            continue
    return out


def load_run(run_id: str) -> dict[str, Any]:
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise InvalidParameter("run_id", f"invalid run id {run_id!r}")
    path = runs_dir() / f"{run_id}.json"
    if not path.exists():
        raise InvalidParameter("run_id", f"no saved run {run_id!r}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # unreadable, or not JSON (written by hand, cut short)
        raise InvalidParameter("run_id", f"could not read the saved run {run_id!r}: {error}") from error
