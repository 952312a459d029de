"""Fine-tune › Data quality: how pre-training text is filtered (pipelines/train/data_quality.py),
each document kept or dropped with the rule that dropped it."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from pipelines.engine import models
from pipelines.inside import data_quality

from .spec_controls import build_spec, controls

SETTINGS = ("min_words", "max_symbol_ratio", "min_stop_words", "near_duplicate", "max_perplexity")


def run_filters(text: str, **values: Any) -> tuple[str, pd.DataFrame]:
    """The filters over the documents: a summary and one row per document."""
    spec = build_spec(data_quality.QualitySpec, values)
    report = data_quality.filter_documents(text, spec, handle=models.get_handle() if spec.max_perplexity else None)
    rows = [
        [
            row["index"],
            "kept" if not row["dropped"] else "dropped: " + "; ".join(row["dropped"]),
            int(row["words"]),
            round(row["mean_word_length"], 1),
            int(row["stop_words"]),
            None if row["perplexity"] is None else round(row["perplexity"], 1),
            row["text"][:160] + ("…" if len(row["text"]) > 160 else ""),
        ]
        for row in report["documents"]
    ]
    table = pd.DataFrame(
        rows, columns=["#", "verdict", "words", "mean word length", "stop words", "perplexity", "document"]
    )
    summary = (
        f"**{report['kept']} kept, {report['dropped']} dropped** of {len(rows)} documents. Heuristics catch menus, "
        "lists and keyword spam that a language model finds perfectly likely (low perplexity); perplexity catches "
        "gibberish the heuristics can miss; deduplication removes copies that would be learned twice."
    )
    return summary, table


def build() -> None:
    """The panel (an accordion of the Fine-tune tab); its API is `/data_quality`."""
    with gr.Accordion("Data quality: how pre-training text is filtered", open=False, elem_id="data-quality"):
        gr.Markdown(
            "Raw web text is mostly not prose. Before pre-training, pipelines drop documents by **quality "
            "heuristics** (Gopher), **deduplicate** them (exact and near copies, MinHash), and drop what a language "
            "model finds very unlikely (**perplexity**, CCNet). Documents are separated by blank lines; the sample "
            "is bundled raw text with the usual kinds of junk."
        )
        text = gr.Textbox(
            value=data_quality.sample_text(), label="Documents", lines=8, max_lines=20, elem_id="data-quality-text"
        )
        with gr.Row():
            settings = controls(data_quality.QualitySpec, SETTINGS)
        go = gr.Button("Filter", variant="primary", elem_id="data-quality-go")
        summary = gr.Markdown(elem_id="data-quality-summary")
        table = gr.Dataframe(interactive=False, wrap=True, elem_id="data-quality-table")
    go.click(run_filters, text, [summary, table], inputs_kwargs=settings, api_name="data_quality")
