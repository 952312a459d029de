"""A class run from the app: the endpoints students' pages and scripts call (pipelines/lessons/workshops.py).

`/workshop_join(code, name)` -> {"student", "workshop", "lessons", "tabs"} and
`/workshop_answer(code, student, lesson, step, answer)` -> {"correct": bool | None, "expected"?} are
contracts. Refusals (a wrong code, an ended workshop, an unknown student) come back as the error
family's messages through the app's one translator.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from pipelines.lessons import workshops

from .controls import MODEL_EVENTS


def workshop_join(code: str, name: str) -> dict[str, Any]:
    """Join a workshop with its code and a display name; keep the returned student id."""
    return workshops.join(code, name)


def workshop_answer(code: str, student: str, lesson: str, step: int, answer: str) -> dict[str, Any]:
    """Answer a step's check; {"correct": true/false (null: the step has no check), "expected" when revealed}."""
    return workshops.answer(code, student, lesson, int(step), answer)


def workshop_progress(code: str, student: str, lesson: str, step: int, kind: str) -> dict[str, Any]:
    """A student reached a step (kind "reached") or finished it ("done")."""
    workshops.record(code, student, lesson, int(step), kind)
    return {"recorded": kind}


def register(demo: gr.Blocks) -> None:
    """The workshop endpoints (answers may compute from the model: they share its concurrency group)."""
    gr.api(workshop_join, api_name="workshop_join")
    gr.api(workshop_progress, api_name="workshop_progress")
    gr.api(workshop_answer, api_name="workshop_answer", **MODEL_EVENTS)
