"""Preferences › Align › Constitutional AI: the model critiques and revises its own answers by
written principles, and the revisions become DPO's preference pairs
(pipelines/train/align/constitution.py)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import knobs
from pipelines.engine import models
from pipelines.train.align import constitution

from .controls import MODEL_EVENTS
from .spec_controls import bind, build_spec, controls

COLUMNS = ["principle", "prompt", "first answer", "critique", "revision", "pair"]


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            [r["principle"], r["prompt"], r["response"], r["critique"], r["revision"], r["no_pair"] or "yes"]
            for r in rows
        ],
        columns=COLUMNS,
    )


def _dropped(rows: list[dict[str, Any]]) -> str:
    reasons = [row["no_pair"] for row in rows if row["no_pair"]]
    if not reasons:
        return "every revision made one"
    counted = {reason: reasons.count(reason) for reason in reasons}
    return "none where " + "; ".join(f"{reason} ({n})" for reason, n in counted.items())


def critique(prompts: str, chosen: list[str], **values: Any) -> Iterator[tuple[str, pd.DataFrame, Any, Any]]:
    """Each prompt's answer, critique and revision as they come (the base model: the policy DPO then
    improves); at the end the pairs are handed to the DPO form, its source switched to the file."""
    spec = build_spec(constitution.ConstitutionSpec, {**values, "principles": chosen or []})
    lines = constitution.prompt_lines(prompts)
    rows: list[dict[str, Any]] = []
    yield f"Prompt 1 of {len(lines)}…", _table(rows), gr.update(), gr.update()
    for row in constitution.run(models.get_handle(), lines, spec):
        rows.append(row)
        yield f"Prompt {min(len(rows) + 1, len(lines))} of {len(lines)}…", _table(rows), gr.update(), gr.update()
    digest = hashlib.sha256(repr((lines, spec)).encode()).hexdigest()[:8]
    path = Path(tempfile.gettempdir()) / "playground-constitution" / f"cai-pairs-{digest}.jsonl"
    count = constitution.write_pairs(rows, path)
    summary = (
        f"**{count} preference pairs** from {len(rows)} prompts ({_dropped(rows)}). Each pair prefers the revision: "
        "no person labelled them — the model did, by the "
        "principles. They are now DPO's data (*Preference pairs: Upload a file*); start DPO to train on them. Read the "
        "critiques first: the pairs are only as good as the critic, and a small model's critiques are often generic."
    )
    if count < 2:
        summary += " DPO needs at least 2 pairs: add prompts or principles."
    yield summary, _table(rows), gr.update(value=str(path)), gr.update(value="Upload a file")


def build(pair_source: gr.Radio, pair_upload: gr.File) -> None:
    """The accordion; its API is `/constitution`. The pairs go to DPO's `pair_upload`."""
    with gr.Accordion("Constitutional AI: critique, revise, then DPO on the revisions", open=False, elem_id="cai"):
        gr.Markdown(
            "Instead of people labelling pairs, the model **critiques** its own answer against a written principle "
            "and **revises** it; each revision preferred to the first answer is a preference pair made by AI feedback "
            "(Bai et al. 2022). The prompts are ones a careless answer gets wrong: rude, unsafe, or built on a false "
            "premise. Each prompt takes three generations: the 12 sample prompts take about 40 s on 2 CPU cores."
        )
        prompts = gr.Textbox(
            value=constitution.sample_prompts(),
            label="Prompts (one per line)",
            lines=5,
            max_lines=12,
            elem_id="cai-prompts",
        )
        with gr.Row():
            chosen = bind(
                constitution.ConstitutionSpec,
                "principles",
                gr.CheckboxGroup(
                    list(constitution.PRINCIPLES),
                    value=list(constitution.PRINCIPLES),
                    label=knobs.label(constitution.ConstitutionSpec, "principles"),
                    info="used in turn, prompt by prompt (assets/constitution.json)",
                    elem_id="cai-principles",
                ),
            )
            settings = controls(constitution.ConstitutionSpec, ("max_new_tokens", "temperature", "seed"))
        go = gr.Button("Critique and revise", variant="primary", elem_id="cai-go")
        summary = gr.Markdown(elem_id="cai-summary")
        table = gr.Dataframe(interactive=False, wrap=True, max_height=400, elem_id="cai-table")
    go.click(
        critique,
        [prompts, chosen],
        [summary, table, pair_upload, pair_source],
        inputs_kwargs=settings,
        api_name="constitution",
        **MODEL_EVENTS,
    )
