"""Instruction templates and multi-task mixes, as FLAN builds its training data (issue 38, tasks
and prompting): every row of every task is phrased by one of several templates (FLAN wrote ~10 per
dataset), and the tasks are mixed in proportion to their size with a cap per task (T5's and FLAN's
*examples-proportional mixing*), so that one big task does not drown the others. A model tuned on
many tasks phrased many ways learns to follow instructions it was not tuned on; the lecture's
FLAN-T5 samsum templates are the example.

The templates live in `assets/datasets/flan_templates.json`; the tasks are the bundled datasets.
The mix is written as prompt/response JSONL: the Fine-tune tab trains on it as on any upload.
"""

from __future__ import annotations

import functools
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import knobs
from pipelines.config import DATASETS
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.store.files import write_atomic

TEMPLATES = DATASETS / "flan_templates.json"


@functools.cache
def templates() -> dict[str, dict[str, Any]]:
    """task -> {"file", "templates": [[input, target], ...]} (the file's own note left out)."""
    return {k: v for k, v in json.loads(TEMPLATES.read_text(encoding="utf-8")).items() if not k.startswith("_")}


TASKS = tuple(templates())


@dataclass(frozen=True)
class MixSpec:
    """Which tasks go into the mix, how many rows each may give, and how each row is phrased."""

    tasks: list[str] = knob(
        default_factory=lambda: list(TASKS),
        help=f"the tasks to mix, among {', '.join(TASKS)}",
        label="Tasks",
        metavar="TASK",
    )
    cap: int = knob(
        60,
        help="most rows a task gives (examples-proportional mixing with a cap: a big task cannot drown the others)",
        label="Rows per task, at most",
        low=1,
        high=10_000,
        slider=False,
    )
    templates_per_row: int = knob(
        1,
        help="how many different templates phrase each row (FLAN used several: more phrasings, same facts)",
        label="Templates per row",
        low=1,
        high=10,
    )
    seed: int = knob(0, help="the draw of rows and templates", label="Seed", low=0, high=2**31 - 1, slider=False)

    def __post_init__(self) -> None:
        knobs.check(self)
        knobs.check_names("tasks", self.tasks, TASKS)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _rows(task: str) -> list[dict[str, Any]]:
    path = Path(DATASETS) / templates()[task]["file"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(spec: MixSpec) -> dict[str, Any]:
    """The mix: rows {"prompt", "response", "task", "template"} shuffled together, and per-task counts."""
    rng = random.Random(spec.seed)
    found = templates()
    mixed: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for task in spec.tasks:
        phrasings = found[task]["templates"]
        rows = _rows(task)
        rng.shuffle(rows)
        rows = rows[: spec.cap]
        counts[task] = 0
        for row in rows:
            chosen = rng.sample(range(len(phrasings)), min(spec.templates_per_row, len(phrasings)))
            for index in chosen:
                prompt, target = phrasings[index]
                missing = (_fields(prompt) | _fields(target)) - row.keys()
                if missing:
                    raise InvalidParameter("tasks", f"{task}: template {index + 1} needs {', '.join(sorted(missing))}")
                mixed.append(
                    {
                        "prompt": prompt.format(**row),
                        "response": target.format(**row),
                        "task": task,
                        "template": index + 1,
                    }
                )
                counts[task] += 1
    rng.shuffle(mixed)
    return {"rows": mixed, "counts": counts, "templates": {t: len(found[t]["templates"]) for t in spec.tasks}}


def write(spec: MixSpec, path: Path) -> dict[str, Any]:
    """Build the mix and write it as JSONL (prompt, response, and which task and template made it)."""
    report = build(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    # two visitors asking for the same mix write the same path: each replaces it whole, never half
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in report["rows"]))
    return {**report, "path": str(path)}
