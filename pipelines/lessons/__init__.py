"""Guided lessons: each lecture's ideas as steps that set a tab up and say what to look for.

Lessons are data (`assets/lessons/*.json`, in file-name order) so a lecturer can add or reorder
them without code. A step names its tab, the lecture section it illustrates, what to do, what to
look for, and what to set: the Generate prompt, the sidebar's sampling settings and adapter (the
base model or a bundled one, so no step waits for training), a Fine-tune preset, the
classification panel's data and mode, the RAG question, or which of the Preferences tab's own tabs
opens. `check` refuses anything the app could not set, so a typo in a
lesson fails the test suite instead of a class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.config import ASSETS
from pipelines.errors import PlaygroundError

LESSONS_DIR = ASSETS / "lessons"
TABS = ("generate", "chat", "finetune", "preferences", "rag", "reasoning", "inside")
SETTABLE = (
    "prompt",
    "sampling",
    "adapter",
    "finetune_preset",
    "classify",
    "rag_question",
    "preferences_tab",
    "align_eval",
    "inside_tab",
    "inside_text",
    "reasoning_question",
)
INSIDE_TABS = (
    "tokenizer",
    "likelihood",
    "attention",
    "lens",
    "heads",
    "patching",
    "steering",
    "architecture",
    "families",
    "scale",
    "compression",
)  # Inside the model's own tabs
PREFERENCE_TABS = ("label", "dataset", "reward", "align")  # the Preferences tab's own tabs


class LessonError(PlaygroundError, ValueError):
    """A lesson file that cannot be used, with the file and step it is about."""


@dataclass(frozen=True)
class Step:
    title: str
    tab: str
    section: str  # the lecture section this step illustrates
    do: str
    look_for: str
    set: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] | None = None  # a question whose answer the app knows (pipelines/lessons/checks.py)


@dataclass(frozen=True)
class Lesson:
    name: str  # the file's stem
    title: str
    lecture: str
    steps: tuple[Step, ...]


def check(lesson: Lesson) -> None:
    """Every step must name a tab and set only what the app can set, to values it accepts."""
    from pipelines.engine import adapters, bundled
    from pipelines.engine.sampling import SamplingParams
    from pipelines.train.finetune import PRESETS

    if not lesson.steps:
        raise LessonError(f"{lesson.name}: a lesson needs at least one step")
    for number, step in enumerate(lesson.steps, 1):
        where = f"{lesson.name}, step {number}"
        if step.tab not in TABS:
            raise LessonError(f"{where}: tab must be one of {', '.join(TABS)}, got {step.tab!r}")
        for name in ("title", "section", "do", "look_for"):
            if not str(getattr(step, name)).strip():
                raise LessonError(f"{where}: {name} is empty")
        unknown = set(step.set) - set(SETTABLE)
        if unknown:
            raise LessonError(f"{where}: cannot set {', '.join(sorted(unknown))}; settable: {', '.join(SETTABLE)}")
        if "sampling" in step.set:
            try:
                SamplingParams(**{k: v for k, v in step.set["sampling"].items() if k != "seed" or v != -1})
            except (TypeError, ValueError) as error:
                raise LessonError(f"{where}: sampling: {error}") from error
        adapter = step.set.get("adapter")
        usable = [adapters.BASE_CHOICE, *bundled.names(bundled.ADAPTERS)]
        if adapter is not None and adapter not in usable:
            raise LessonError(
                f"{where}: adapter must be one of {', '.join(usable)} (a lesson cannot wait for training)"
            )
        wanted = step.set.get("classify")
        if wanted is not None:
            from pipelines.train.classify import MODES

            if (
                not isinstance(wanted, dict)
                or set(wanted) != {"data", "mode"}
                or wanted["mode"] not in MODES
                or wanted["data"] not in ("sentiment", "paraphrase")
            ):
                raise LessonError(
                    f'{where}: classify must be {{"data": "sentiment" or "paraphrase", "mode": one of '
                    f"{', '.join(MODES)}}}, got {wanted!r}"
                )
        inner = step.set.get("preferences_tab")
        if inner is not None and (inner not in PREFERENCE_TABS or step.tab != "preferences"):
            raise LessonError(
                f"{where}: preferences_tab must be one of {', '.join(PREFERENCE_TABS)}, in a preferences step"
            )
        inner_inside = step.set.get("inside_tab")
        if inner_inside is not None and (inner_inside not in INSIDE_TABS or step.tab != "inside"):
            raise LessonError(f"{where}: inside_tab must be one of {', '.join(INSIDE_TABS)}, in an inside step")
        for key, tab in (("inside_text", "inside"), ("reasoning_question", "reasoning")):
            value = step.set.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip() or step.tab != tab):
                raise LessonError(f"{where}: {key} is text for the {tab} tab, in a {tab} step")
        judged = step.set.get("align_eval")  # Align's "Did it get better?": which adapter, judged by which reward model
        if judged is not None:
            shipped = {"adapter": bundled.names(bundled.ADAPTERS), "reward_model": bundled.names(bundled.REWARD_MODELS)}
            if (
                not isinstance(judged, dict)
                or set(judged) != set(shipped)
                or any(judged[key] not in names for key, names in shipped.items())
            ):
                raise LessonError(
                    f'{where}: align_eval must be {{"adapter": a bundled adapter, "reward_model": a bundled reward '
                    f"model}}, got {judged!r}"
                )
        preset = step.set.get("finetune_preset")
        if preset is not None and preset not in PRESETS:
            raise LessonError(f"{where}: no Fine-tune preset named {preset!r}")
        if step.check is not None:
            from pipelines.lessons.checks import CheckError, validate

            try:
                validate(step.check, where)
            except CheckError as error:
                raise LessonError(str(error)) from error
        if step.set.get("prompt") is not None and step.tab != "generate":
            raise LessonError(f"{where}: a prompt is set in the Generate tab; this step is in {step.tab!r}")


def read(path: Path) -> Lesson:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        lesson = Lesson(
            name=path.stem,
            title=data["title"],
            lecture=data["lecture"],
            steps=tuple(Step(**step) for step in data["steps"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LessonError(f"{path.name}: not a lesson ({type(error).__name__}: {error})") from error
    check(lesson)
    return lesson


@lru_cache(maxsize=1)
def load_lessons(directory: Path = LESSONS_DIR) -> tuple[Lesson, ...]:
    return tuple(read(path) for path in sorted(directory.glob("*.json")))


def find(title: str) -> Lesson:
    for lesson in load_lessons():
        if lesson.title == title:
            return lesson
    raise LessonError(f"no lesson titled {title!r}")
