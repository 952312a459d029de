"""Reasoning › ReAct: the model reasons and acts with tools -- arithmetic in the sandbox, a search
over a RAG collection -- and reads each tool's result before its next step
(pipelines/reasoning/react.py)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import gradio as gr

from pipelines.engine import models
from pipelines.rag import store
from pipelines.reasoning import react

from .controls import MODEL_EVENTS
from .pickers import LiveDropdown
from .spec_controls import build_spec, controls

EXAMPLE = "A school has 14 classes of 27 pupils, and 38 pupils are away on a trip. How many pupils are at school?"


def _line(row: dict[str, Any]) -> str:
    said = f"**{row['step']}. Thought:** {html.escape(row['thought'] or '—')}"
    if row.get("gave_up"):
        return f"⏹ Stopped after {row['step']} steps without `finish[…]`: the model kept acting or looped."
    if row["tool"] is None:
        return said + f"  \n⚠️ {html.escape(row['observation'])}"
    said += f"  \n**Action:** `{html.escape(row['tool'])}[{html.escape(row['argument'] or '')}]`"
    if row["tool"] == "finish":
        return said + f"  \n✅ **Answer: {html.escape(row['answer'] or '')}**"
    mark = "" if row["ok"] else "⚠️ "
    return said + f"  \n**Observation:** {mark}{html.escape(row['observation'])}"


def trace(question: str, collection: str | None, **values: Any) -> Iterator[str]:
    """The trace as it grows, one Thought / Action / Observation at a time."""
    spec = build_spec(react.ReActSpec, values)
    lines: list[str] = []
    for row in react.run(models.get_handle(), question, spec, collection or None):
        lines.append(_line(row))
        yield "\n\n".join(lines)


def build() -> None:
    """The accordion; its API is `/react`."""
    with gr.Accordion("ReAct: reason and act with tools (the sandbox, a RAG collection)", open=False, elem_id="react"):
        gr.Markdown(
            "ReAct interleaves **Thought**, **Action** (a tool call) and **Observation** (the tool's result, written "
            "into the prompt by the app, not by the model) until the model calls `finish[…]`. Tools: `calculate[…]` "
            "runs in the sandbox, `search[…]` reads the best passage of the chosen collection. Two worked examples "
            "teach the format (`assets/reasoning/react.txt`); a 135M model follows it some of the time."
        )
        with gr.Row():
            question = gr.Textbox(value=EXAMPLE, label="Question", lines=2, scale=3, elem_id="react-question")
            collection = LiveDropdown(
                store.collection_names, label="Collection for search[…] (optional)", scale=1, elem_id="react-collection"
            )
        with gr.Row():
            settings = controls(react.ReActSpec, ("max_steps", "max_new_tokens"))
            go = gr.Button("Run ReAct", variant="primary", elem_id="react-go")
        steps = gr.Markdown(elem_id="react-trace")
    go.click(trace, [question, collection], steps, inputs_kwargs=settings, api_name="react", **MODEL_EVENTS)
