"""Preferences › Dataset › Drift: do the prompts people send now look like the reference the model
was checked on (pipelines/inside/drift.py)?"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from pipelines.engine import models
from pipelines.inside import drift

from .controls import MODEL_EVENTS
from .spec_controls import build_spec, controls

SOURCES = ("Two lists of prompts", "Label store: newest prompts vs those before them")


def measure(
    source: str, reference_text: str, recent_text: str, **values: Any
) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The verdict, one row per feature, and the recent prompts least like the reference."""
    spec = build_spec(drift.DriftSpec, values)
    if source == SOURCES[1]:
        reference, recent = drift.label_store_sets(spec)
    else:
        reference, recent = drift.lines(reference_text, "reference"), drift.lines(recent_text, "recent")
    report = drift.compare(models.get_handle(), reference, recent, spec)
    features = pd.DataFrame(
        [
            [
                f["feature"],
                round(f["reference_median"], 1),
                round(f["recent_median"], 1),
                round(f["ks_statistic"], 3),
                f"{f['p_value']:.2g}",
                f"{f['psi']:.2f} ({f['psi_reading']})",
                "drifted" if f["drifted"] else "—",
            ]
            for f in report["features"]
        ],
        columns=["feature", "reference median", "recent median", "KS statistic", "p-value", "PSI", "verdict"],
    )
    unusual = pd.DataFrame(
        [
            [r["prompt"], r["tokens"], None if r["perplexity"] is None else round(r["perplexity"], 1)]
            for r in report["most_unusual"]
        ],
        columns=["recent prompt", "tokens", "perplexity"],
    )
    drifted = [f["feature"] for f in report["features"] if f["drifted"]]
    verdict = (
        f"**Drift in {' and '.join(drifted)}**" if drifted else "**No drift detected** at this significance"
    ) + f": {report['recent']} recent prompts against {report['reference']} reference prompts. "
    summary = verdict + (
        "The KS test asks whether the two sets could come from one distribution (a small p-value: unlikely); PSI "
        "measures how far the recent shares of the reference's quantile bins moved. The prompts below are the "
        "recent ones the model finds most surprising: read them to see *what* changed (a language, a domain, a "
        "format) — the figures on the reference set no longer describe them."
    )
    return summary, features, unusual


def build() -> None:
    """The accordion; its API is `/drift`."""
    reference_example, recent_example = drift.example_sets()
    with gr.Accordion("Drift: do recent prompts look like the reference?", open=False, elem_id="drift"):
        gr.Markdown(
            "A model is checked once, on a reference set; when what people ask moves (another language, longer "
            "prompts, a new domain) those figures stop describing it, and nothing fails loudly. Compare two sets of "
            "prompts by their **length in tokens** and their **perplexity** under the model. The examples: the "
            "bundled preference prompts (short science and history questions) and a 'recent' set that has moved."
        )
        source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Compare", elem_id="drift-source")
        with gr.Row():
            reference = gr.Textbox(
                value=reference_example, label="Reference prompts (one per line)", lines=6, max_lines=12
            )
            recent = gr.Textbox(value=recent_example, label="Recent prompts (one per line)", lines=6, max_lines=12)
        with gr.Row():
            settings = controls(drift.DriftSpec, ("recent", "p_value"))
            go = gr.Button("Compare", variant="primary", elem_id="drift-go")
        summary = gr.Markdown(elem_id="drift-summary")
        features = gr.Dataframe(interactive=False, elem_id="drift-features")
        unusual = gr.Dataframe(interactive=False, wrap=True, label="The most surprising recent prompts")
    go.click(
        measure,
        [source, reference, recent],
        [summary, features, unusual],
        inputs_kwargs=settings,
        api_name="drift",
        **MODEL_EVENTS,
    )
