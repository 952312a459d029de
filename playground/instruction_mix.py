"""Fine-tune › Instruction templates: FLAN-style phrasings of the bundled tasks and a multi-task
mix built from them (pipelines/train/instruction_mix.py), handed to the form as its data."""

from __future__ import annotations

import hashlib
import html
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import knobs
from pipelines.train import instruction_mix

from .spec_controls import bind, build_spec, controls


def templates_table() -> pd.DataFrame:
    rows = [
        [task, number, prompt, target]
        for task, found in instruction_mix.templates().items()
        for number, (prompt, target) in enumerate(found["templates"], 1)
    ]
    return pd.DataFrame(rows, columns=["task", "#", "input template", "target"])


def build_mix(tasks: list[str], **values: Any) -> tuple[str, pd.DataFrame, str]:
    """Write the mix to a file and hand it to the form's upload: a summary, a preview, the file."""
    spec = build_spec(instruction_mix.MixSpec, {**values, "tasks": tasks or []})
    digest = hashlib.sha256(repr(spec).encode()).hexdigest()[:8]
    path = Path(tempfile.gettempdir()) / "playground-mixes" / f"flan-mix-{digest}.jsonl"
    report = instruction_mix.write(spec, path)
    counts = ", ".join(f"{task} {count}" for task, count in report["counts"].items())
    summary = (
        f"**{len(report['rows'])} rows** ({html.escape(counts)}), each phrased by "
        f"{spec.templates_per_row} of its task's templates, shuffled together. The mix is now the form's data "
        "(*1 · Data*, the upload, checked there at once): train on it, and the model learns to follow the "
        "phrasings, not one fixed prompt."
    )
    preview = pd.DataFrame(
        [[r["task"], r["template"], r["prompt"], r["response"]] for r in report["rows"][:20]],
        columns=["task", "template", "prompt", "response"],
    )
    return summary, preview, report["path"]


def build(upload: gr.File) -> None:
    """The accordion; its API is `/instruction_mix`. `upload` is the Fine-tune form's data upload."""
    with gr.Accordion("Instruction templates and multi-task mixes (FLAN)", open=False, elem_id="flan"):
        gr.Markdown(
            "FLAN fine-tuned a model on many tasks, each phrased with ~10 templates, mixed in proportion to their size "
            "with a cap per task — and the model learned to follow instructions it had never seen. Here the bundled "
            "tasks have 5–6 templates each; build a mix and it becomes the form's data."
        )
        gr.Dataframe(templates_table(), interactive=False, wrap=True, max_height=260, label="Templates")
        with gr.Row():
            tasks = bind(
                instruction_mix.MixSpec,
                "tasks",
                gr.CheckboxGroup(
                    list(instruction_mix.TASKS),
                    value=list(instruction_mix.TASKS),
                    label=knobs.label(instruction_mix.MixSpec, "tasks"),
                    elem_id="flan-tasks",
                ),
            )
            settings = controls(instruction_mix.MixSpec, ("cap", "templates_per_row", "seed"))
        go = gr.Button("Build the mix", variant="primary", elem_id="flan-go")
        summary = gr.Markdown(elem_id="flan-summary")
        preview = gr.Dataframe(interactive=False, wrap=True, max_height=300, elem_id="flan-preview")
    go.click(build_mix, tasks, [summary, preview, upload], inputs_kwargs=settings, api_name="instruction_mix")
