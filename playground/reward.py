"""Reward-model sub-tab: train on the labels (or a file) as a job, inspect, score, check agreement."""

from __future__ import annotations

import html
import uuid

import gradio as gr
import pandas as pd

from pipelines import jobs, preferences, reward
from pipelines.files import UploadError, copy_upload
from pipelines.sampling import InvalidParameter

from .errors import UserError
from . import jobs_panel
from .controls import ASSETS
from .guard import admin_only
from .pickers import FIRST, LiveDropdown

SOURCES = ("Labels in the store", "Bundled sample (clear-cut pairs)", "Upload a file")
SAMPLE = ASSETS / "datasets" / "preference_pairs.jsonl"
SERIES = {
    "loss": "train loss",
    "eval_loss": "eval loss",
    "eval_accuracy": "held-out accuracy",
    "accuracy": "train accuracy",
}
SUFFIXES = (".jsonl", ".json", ".parquet")


@admin_only("start training")
def start_training(
    source: str,
    upload: str | None,
    name: str,
    epochs: float,
    max_steps: float,
    lr: float,
    batch_size: float,
    skip_bad_rows: bool,
    overwrite: bool,
    request: gr.Request = None,
):
    job_id = uuid.uuid4().hex[:12]
    try:
        data = None
        if source == SOURCES[1]:
            data = str(SAMPLE)
        elif source == SOURCES[2]:
            if not upload:
                raise UserError("Choose a preference file to train on.")
            data = str(
                copy_upload(upload, jobs.job_dir(job_id) / "inputs", max_bytes=200_000_000, allowed_suffixes=SUFFIXES)
            )
        spec = reward.RewardSpec(
            out=(name or "").strip(),
            data=data,
            from_store=data is None,
            epochs=float(epochs),
            max_steps=int(max_steps) if max_steps and max_steps > 0 else -1,
            learning_rate=float(lr),
            batch_size=int(batch_size),
            skip_bad_rows=bool(skip_bad_rows),
            overwrite=bool(overwrite),
        )
        if reward.model_path(spec.out).exists() and not spec.overwrite:
            raise InvalidParameter(
                "out", f"a reward model named {spec.out!r} exists; choose another name or allow replacing"
            )
        reward.load_pairs(spec)  # fail now, with row numbers, rather than in the job
    except (InvalidParameter, UploadError, preferences.PreferenceError) as error:
        raise UserError(str(error)) from error
    jobs.submit("reward", spec.out, spec.to_dict(), job_id=job_id)
    jobs.manager().poll_once()
    gr.Info(f"Reward model {spec.out!r} is training; progress appears below.")
    return jobs_panel.refresh_choices(("reward",), job_id)


def reward_model_names() -> list[str]:
    return [m["name"] for m in reward.list_models()]


def models_table() -> pd.DataFrame:
    rows = []
    for m in reward.list_models():
        metrics, data = m.get("metrics", {}), m.get("data", {})
        rows.append(
            [  # what tells models apart first: a narrow column must not hide the accuracy
                m["name"],
                _round(metrics.get("eval_accuracy_before")),
                _round(metrics.get("eval_accuracy")),
                _round(metrics.get("eval_margin")),
                data.get("train_pairs"),
                data.get("eval_pairs"),
                data.get("source", ""),
                m.get("base_model", ""),
                m.get("created", ""),
            ]
        )
    return pd.DataFrame(
        rows,
        columns=[
            "name",
            "held-out acc. before",
            "held-out acc. after",
            "mean margin",
            "train pairs",
            "held-out pairs",
            "data",
            "base",
            "created",
        ],
    )


def _round(value):
    return None if value is None else round(float(value), 3)


def score_text(name: str | None, prompt: str, response: str) -> str:
    if not name or name == "(none)":
        raise UserError("Choose a reward model.")
    if not prompt.strip() or not response.strip():
        raise UserError("Give both a prompt and a response to score.")
    try:
        value = reward.score(name, prompt, response)
    except reward.RewardModelError as error:
        raise UserError(str(error)) from error
    return f"Reward: **{value:+.3f}** (higher = preferred; only differences between responses to the same prompt mean something)"


def agreement(name: str | None) -> str:
    if not name or name == "(none)":
        raise UserError("Choose a reward model.")
    try:
        result = reward.agreement_with_humans(name)
    except reward.RewardModelError as error:
        raise UserError(str(error)) from error
    if not result["n"]:
        return "No labelled pairs in the store yet."
    return (
        f"On the **{result['n']}** pairs implied by the stored votes, **{html.escape(name)}** prefers the human choice "
        f"**{result['accuracy']:.0%}** of the time (mean margin {result['mean_margin']:+.3f}). Pairs it was trained on count "
        "too, so compare with the held-out accuracy above."
    )


def build(demo: gr.Blocks) -> None:
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Train a reward model")
            source = gr.Radio(list(SOURCES), value=SOURCES[1], label="Pairs")
            upload = gr.File(label="Preference file (trl format)", file_types=list(SUFFIXES), type="filepath")
            with gr.Row():
                name = gr.Textbox(value="my-reward-model", label="Name")
                overwrite = gr.Checkbox(label="Replace if it exists")
            with gr.Row():
                epochs = gr.Number(value=2, label="Epochs", minimum=0.1)
                max_steps = gr.Number(value=0, precision=0, label="Max steps (> 0 overrides)", minimum=0)
                lr = gr.Number(value=3e-4, label="Learning rate")
                batch = gr.Number(value=8, precision=0, label="Batch size", minimum=1)
            skip = gr.Checkbox(label="Skip rows with problems")
            gr.Markdown(
                "<span class='muted'>The base model gets a one-number score head; LoRA adapts the body and the head is "
                "trained in full. Held-out pairs use prompts never seen in training.</span>"
            )
            start = gr.Button("Train reward model", variant="primary")
        with gr.Column():
            gr.Markdown("#### Reward models")
            table = gr.Dataframe(interactive=False, wrap=True, pinned_columns=1)
            refresh = gr.Button("Refresh", size="sm")
            pick = LiveDropdown(reward_model_names, fallback=FIRST, label="Reward model")
            prompt = gr.Textbox(label="Prompt", lines=2, value="What is the capital of France?")
            response = gr.Textbox(label="Response", lines=3, value="The capital of France is Paris.")
            score_button = gr.Button("Score")
            scored = gr.Markdown()
            agree_button = gr.Button("Agreement with the human labels")
            agreed = gr.Markdown()
    panel = jobs_panel.build(demo, ("reward",), SERIES, title="Reward-model training jobs")

    def refresh_models():
        names = reward_model_names()
        return models_table(), gr.update(choices=names, value=names[0] if names else None)

    gr.on([refresh.click, demo.load], refresh_models, None, [table, pick], api_name="reward_models")
    start.click(
        start_training,
        [source, upload, name, epochs, max_steps, lr, batch, skip, overwrite],
        panel.job,
        api_name="start_reward_training",
    )
    score_button.click(score_text, [pick, prompt, response], scored, api_name="reward_score")
    agree_button.click(agreement, pick, agreed, api_name="reward_agreement")
