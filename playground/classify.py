"""Classification fine-tuning (in the Fine-tune tab): train a label head as a job, compare modes, try it."""

from __future__ import annotations

import html
import uuid
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.config import DATASETS
from pipelines.store import jobs
from pipelines.store.files import copy_upload
from pipelines.train import classify

from . import jobs_panel
from .controls import how_it_works, on_submit, refuse_out_of_range, rounded
from .errors import UserError
from .guard import admin_only
from .pickers import FIRST, LiveDropdown, first_value
from .spec_controls import bind, build_spec, controls

SOURCES = {
    "Bundled: sentiment (120 reviews, positive / negative)": DATASETS / "sentiment.jsonl",
    "Bundled: paraphrase (80 sentence pairs, same / different)": DATASETS / "paraphrase.jsonl",
}
UPLOAD = "Upload a file"
TITLE = "Classification fine-tuning: a label head on the model (sentiment, paraphrase)"
SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
SERIES = {"loss": "train loss", "eval_loss": "eval loss", "eval_accuracy": "held-out accuracy"}
MODE_LABELS = {
    "head": "Feature-based: the head only (the model frozen)",
    "lora": "Fine-tuned with LoRA (+ the head)",
    "full": "Fine-tuned: every weight",
}


@admin_only("start training")
def start_training(
    source: str, upload: str | None, shown: str | None = None, request: gr.Request | None = None, **settings: Any
):
    """Check the labelled file and queue a classification job (settings by ClassifySpec field name)."""
    refuse_out_of_range(shown)
    job_id = uuid.uuid4().hex[:12]
    if source == UPLOAD:
        if not upload:
            raise UserError("Choose a labelled file to train on (columns text, label; text_pair for pairs).")
        data = str(
            copy_upload(upload, jobs.job_dir(job_id) / "inputs", max_bytes=50_000_000, allowed_suffixes=SUFFIXES)
        )
    elif source in SOURCES:
        data = str(SOURCES[source])
    else:
        raise UserError("Choose the data to train on.")
    spec = build_spec(classify.ClassifySpec, settings, data=data)
    classify.check_examples(classify.read_examples(spec.data), spec.skip_bad_rows)  # row problems now, not in the job
    if classify.classifier_path(spec.out).exists() and not spec.overwrite:
        raise UserError(f"A classifier named {spec.out!r} exists; choose another name or allow replacing it.")
    jobs.start("classify", spec.out, spec.to_dict(), job_id=job_id)
    gr.Info(f"Classifier {spec.out!r} is training; progress appears below.")
    return jobs_panel.refresh_choices(("classify",), job_id)


def classifier_choices() -> list[tuple[str, str]]:
    return [(f"{m['name']} ({m.get('mode', '?')})", m["name"]) for m in classify.list_classifiers()]


def classifiers_table() -> pd.DataFrame:
    """The runs side by side: the same split, so feature-based and fine-tuned compare directly."""
    rows = []
    for m in classify.list_classifiers():
        metrics, data = m.get("metrics", {}), m.get("data", {})
        rows.append(
            [
                m["name"],
                m.get("mode"),
                rounded(metrics.get("eval_accuracy_before")),
                rounded(metrics.get("eval_accuracy")),
                m.get("trainable_params"),
                data.get("source", ""),
                f"{data.get('train_examples')} / {data.get('eval_examples')}",
                rounded(m.get("seconds"), 0),
            ]
        )
    columns = ["name", "mode", "held-out acc. before", "after", "trainable", "data", "train / held out", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def describe(name: str | None) -> str:
    """One classifier's held-out result: accuracy before and after, and which label is taken for which."""
    if not name:
        return ""
    info = classify.meta(name)
    metrics, labels, confusion = info.get("metrics", {}), info.get("labels", []), info.get("confusion") or []
    before, after = metrics.get("eval_accuracy_before"), metrics.get("eval_accuracy")
    mode = str(info.get("mode"))
    text = f"**{html.escape(name)}** ({MODE_LABELS.get(mode, mode)}): held-out accuracy "
    text += f"{before:.1%} → **{after:.1%}**" if before is not None and after is not None else "not measured"
    if confusion:
        header = "| true ↓ / predicted → | " + " | ".join(html.escape(label) for label in labels) + " |"
        rule = "|---" * (len(labels) + 1) + "|"
        body = [
            f"| {html.escape(label)} | " + " | ".join(str(n) for n in row) + " |"
            for label, row in zip(labels, confusion, strict=False)
        ]
        text += "\n\n" + "\n".join([header, rule, *body])
    return text


def try_classifier(name: str | None, text: str, text_pair: str) -> str:
    if not name:
        raise UserError("Choose a classifier (train one above first).")
    if not (text or "").strip():
        raise UserError("Type a text to classify.")
    info = classify.meta(name)
    if info.get("paired") and not (text_pair or "").strip():
        raise UserError(f"{name!r} was trained on sentence pairs: give the second sentence too.")
    result = classify.predict(name, text, text_pair or None)
    bars = "".join(
        f"<div class='prob-row'><span>{html.escape(label)}</span> "
        f"<progress max='1' value='{p:.4f}'></progress> {p:.1%}</div>"
        for label, p in sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
    )
    return f"<p><b>{html.escape(result['label'])}</b></p>{bars}"


def lesson_updates(wanted: dict[str, str] | None) -> list[Any]:
    """For a lesson step's `classify` set-up: the panel opened, the data, the mode and a name saying both."""
    if wanted is None:
        return [gr.update()] * 4
    source = next(label for label, path in SOURCES.items() if path.stem == wanted["data"])
    return [gr.Accordion(open=True), source, wanted["mode"], f"{wanted['data']}-{wanted['mode']}"]


def build(demo: gr.Blocks) -> dict[str, Any]:
    """The panel (a closed accordion under the fine-tuning form); returns what a lesson step may set."""
    with gr.Accordion(TITLE, open=False, elem_id="cls-box") as box:
        targets = _build(demo)
        how_it_works("classify", "How it works: a classification head, feature-based or fine-tuned")
    return {"classify": [box, *targets]}


def _build(demo: gr.Blocks) -> list[Any]:
    Spec = classify.ClassifySpec
    with gr.Row():
        with gr.Column(elem_id="cls-settings"):
            source = bind(Spec, "data", gr.Radio([*SOURCES, UPLOAD], value=next(iter(SOURCES)), label="Data"))
            upload = bind(
                Spec,
                "data",
                gr.File(label="Labelled file (text, label; text_pair for pairs)", file_types=list(SUFFIXES)),
            )
            mode = bind(
                Spec,
                "mode",
                gr.Radio([(label, value) for value, label in MODE_LABELS.items()], value="head", label="Mode"),
            )
            with gr.Row():
                settings = controls(Spec, ["out", "overwrite"], out={"value": "sentiment-head"})
            with gr.Row():
                settings |= controls(
                    Spec,
                    ["epochs", "max_steps", "learning_rate", "batch_size"],
                    learning_rate={"value": classify.DEFAULT_RATES["head"]},
                )
            settings |= controls(Spec, ["skip_bad_rows"])
            with gr.Accordion("More classification settings", open=False):
                settings |= controls(Spec, ["max_length", "lora_r", "lora_alpha", "eval_fraction", "seed"])
            settings["mode"] = mode
            start = gr.Button("Train classifier", variant="primary", elem_id="cls-start")
        with gr.Column():
            table = gr.Dataframe(interactive=False, wrap=True, pinned_columns=1, elem_id="cls-table")
            refresh = gr.Button("Refresh", size="sm")
            pick = LiveDropdown(classifier_choices, fallback=FIRST, label="Classifier", elem_id="cls-pick")
            described = gr.Markdown(elem_id="cls-describe")
            text = gr.Textbox(label="Text", lines=2, value="The service was slow but the food was wonderful.")
            text_pair = gr.Textbox(label="Second sentence (pair tasks only)", lines=1)
            go = gr.Button("Classify", elem_id="cls-go")
            shown = gr.HTML(elem_id="cls-result")
    panel = jobs_panel.build(demo, ("classify",), SERIES, title="Classification jobs")

    def refresh_all(made: str | None = None):
        names = classifier_choices()
        values = [value for _, value in names]
        return classifiers_table(), gr.update(choices=names, value=made if made in values else first_value(names))

    # each mode has its own good rate (a frozen model's head takes a far higher one than full fine-tuning)
    mode.change(classify.DEFAULT_RATES.get, mode, settings["learning_rate"], api_visibility="private")
    gr.on([refresh.click, demo.load], refresh_all, None, [table, pick], api_name="classifiers")
    jobs_panel.when_succeeded(panel, lambda job: refresh_all(job.name), [], [table, pick])
    on_submit(
        start,
        start_training,
        [source, upload],
        panel.job,
        form="cls-settings",
        settings=settings,
        api_name="start_classifier",
    )
    jobs_panel.loads_capsules(panel, settings)
    go.click(try_classifier, [pick, text, text_pair], shown, api_name="classify")
    pick.change(describe, pick, described, api_visibility="private")
    return [source, mode, settings["out"]]
