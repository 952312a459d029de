"""In-context learning, measured: zero-, one- and few-shot accuracy of one task on its labelled items.

One example in the Generate tab shows what a prompt *can* do; a labelled set shows what it does
on average, and how much each added example buys (or costs: a one-shot prompt whose only example
is "positive" pulls answers towards "positive"). Every item of every prompt style goes to the
model in one batch, greedy, so the figures are reproducible and the run takes seconds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipelines.engine import generation
from pipelines.engine.models import ModelHandle
from pipelines.engine.prompts import SHOTS, Task, load_tasks
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter


@dataclass
class ItemResult:
    shots: str
    input: str
    expected: str
    answer: str  # the model's first word, lower-cased: what is compared
    correct: bool


@dataclass
class ShotsReport:
    task: str
    accuracy: dict[str, float]  # shots -> share of items right
    invalid: dict[str, int]  # shots -> answers that are none of the labels
    items: list[ItemResult]


def measurable_tasks() -> list[str]:
    return [t.name for t in load_tasks() if t.tests]


def _task(name: str) -> Task:
    for task in load_tasks():
        if task.name == name and task.tests:
            return task
    raise InvalidParameter("task", f"no labelled task named {name!r}; choose one of {', '.join(measurable_tasks())}")


def first_word(text: str) -> str:
    words = text.strip().split()
    return words[0].strip(".,!:;\"'").lower() if words else ""


def _run(
    handle: ModelHandle, task: Task, styles: Mapping[str, Callable[[str], str]], adapter: str | None
) -> ShotsReport:
    """Every labelled item under every prompt style (style -> item -> prompt), greedy, in one batch."""
    labels = {label.lower() for _, label in task.tests}
    jobs = [(style, item, label) for style in styles for item, label in task.tests]
    params = SamplingParams(
        temperature=0, max_new_tokens=int(task.settings.get("max_new_tokens", 4))
    )  # the first word counts, even after a line break
    rows = generation.generate_batch(
        handle, [styles[style](item) for style, item, _ in jobs], [params] * len(jobs), adapter=adapter
    )
    items = []
    for (style, item, label), row in zip(jobs, rows, strict=False):
        answer = first_word(row.text)
        items.append(ItemResult(style, item, label, answer, answer == label.lower()))
    accuracy = {s: sum(i.correct for i in items if i.shots == s) / len(task.tests) for s in styles}
    invalid = {s: sum(i.answer not in labels for i in items if i.shots == s) for s in styles}
    return ShotsReport(task.name, accuracy, invalid, items)


def measure(handle: ModelHandle, task_name: str, adapter: str | None = None) -> ShotsReport:
    """Accuracy of each prompt style (zero-, one-, few-shot) over the task's labelled items."""
    task = _task(task_name)
    return _run(handle, task, {shots: functools.partial(task.render, shots) for shots in SHOTS}, adapter)


def measure_wordings(handle: ModelHandle, task_name: str, adapter: str | None = None) -> ShotsReport:
    """Accuracy of each wording of the task's instruction, zero-shot, over the same labelled items:
    how much the words of a prompt matter when nothing else changes."""
    task = _task(task_name)
    if len(task.wordings) < 2:
        raise InvalidParameter("task", f"{task.name!r} has no other wordings to compare")
    styles = {
        f"wording {n}: {wording}": functools.partial(task.render, "zero-shot", instruction=wording)
        for n, wording in enumerate(task.wordings, 1)
    }
    return _run(handle, task, styles, adapter)
