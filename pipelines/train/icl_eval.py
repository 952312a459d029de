"""In-context learning, measured: zero-, one- and few-shot accuracy of one task on its labelled items.

One example in the Generate tab shows what a prompt *can* do; a labelled set shows what it does
on average, and how much each added example buys (or costs: a one-shot prompt whose only example
is "positive" pulls answers towards "positive"). Every item of every prompt style goes to the
model in one batch, greedy, so the figures are reproducible and the run takes seconds.
"""

from __future__ import annotations

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


def measure(handle: ModelHandle, task_name: str, adapter: str | None = None) -> ShotsReport:
    """Accuracy of each prompt style over the task's labelled items (greedy, one batch)."""
    task = _task(task_name)
    labels = {label.lower() for _, label in task.tests}
    jobs = [(shots, item, label) for shots in SHOTS for item, label in task.tests]
    params = SamplingParams(
        temperature=0, max_new_tokens=int(task.settings.get("max_new_tokens", 4))
    )  # the first word counts, even after a line break
    rows = generation.generate_batch(
        handle, [task.render(shots, item) for shots, item, _ in jobs], [params] * len(jobs), adapter=adapter
    )
    items = []
    for (shots, item, label), row in zip(jobs, rows, strict=False):
        answer = first_word(row.text)
        items.append(ItemResult(shots, item, label, answer, answer == label.lower()))
    accuracy = {s: sum(i.correct for i in items if i.shots == s) / len(task.tests) for s in SHOTS}
    invalid = {s: sum(i.answer not in labels for i in items if i.shots == s) for s in SHOTS}
    return ShotsReport(task.name, accuracy, invalid, items)
