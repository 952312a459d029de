"""Reward-model sub-tab: train on the labels (or a file) as a job, inspect, score, check agreement."""

from __future__ import annotations

import html
import uuid
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.config import PREFERENCE_SAMPLE
from pipelines.store import jobs
from pipelines.store.files import copy_upload
from pipelines.train import reward

from . import jobs_panel
from .controls import on_submit, refuse_out_of_range, rounded
from .errors import UserError
from .guard import admin_only
from .pickers import FIRST, LiveDropdown, first_value
from .spec_controls import bind, build_spec, controls

SOURCES = ("Labels in the store", "Bundled sample (clear-cut pairs)", "Upload a file")
SAMPLE = PREFERENCE_SAMPLE
SERIES = {
    "loss": "train loss",
    "eval_loss": "eval loss",
    "eval_accuracy": "held-out accuracy",
    "accuracy": "train accuracy",
}
SUFFIXES = (".jsonl", ".json", ".parquet")


@admin_only("start training")
def start_training(
    source: str, upload: str | None, shown: str | None = None, request: gr.Request | None = None, **settings: Any
):
    """Check the pairs and queue a reward-model job (settings by RewardSpec field name)."""
    refuse_out_of_range(shown)
    job_id = uuid.uuid4().hex[:12]
    data = None
    if source == SOURCES[1]:
        data = str(SAMPLE)
    elif source == SOURCES[2]:
        if not upload:
            raise UserError("Choose a preference file to train on.")
        data = str(
            copy_upload(upload, jobs.job_dir(job_id) / "inputs", max_bytes=200_000_000, allowed_suffixes=SUFFIXES)
        )
    spec = build_spec(reward.RewardSpec, settings, data=data, from_store=data is None)
    reward.load_pairs(spec)  # fail now, with row numbers, rather than in the job (and before the name)
    if reward.model_path(spec.out).exists() and not spec.overwrite:
        raise UserError(f"A reward model named {spec.out!r} exists; choose another name or allow replacing it.")
    jobs.start("reward", spec.out, spec.to_dict(), job_id=job_id)
    gr.Info(f"Reward model {spec.out!r} is training; progress appears below.")
    return jobs_panel.refresh_choices(("reward",), job_id)


def reward_model_names() -> list[tuple[str, str]]:
    return reward.choices()


def models_table() -> pd.DataFrame:
    rows = []
    for m in reward.list_models():
        metrics, data = m.get("metrics", {}), m.get("data", {})
        rows.append(
            [  # what tells models apart first: a narrow column must not hide the accuracy
                reward.label(m),
                rounded(metrics.get("eval_accuracy_before")),
                rounded(metrics.get("eval_accuracy")),
                rounded(metrics.get("eval_margin")),
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


def score_text(name: str | None, prompt: str, response: str) -> str:
    if not name or name == "(none)":
        raise UserError("Choose a reward model.")
    if not prompt.strip() or not response.strip():
        raise UserError("Give both a prompt and a response to score.")
    value = reward.score(name, prompt, response)
    return f"Reward: **{value:+.3f}** (higher = preferred; only differences between responses to the same prompt mean something)"


def agreement(name: str | None) -> str:
    if not name or name == "(none)":
        raise UserError("Choose a reward model.")
    result = reward.agreement_with_humans(name)
    if not result["n"]:
        return "No labelled pairs in the store yet."
    return (
        f"On the **{result['n']}** pairs implied by the stored votes, **{html.escape(name)}** prefers the human choice "
        f"**{result['accuracy']:.0%}** of the time (mean margin {result['mean_margin']:+.3f}). Pairs it was trained on count "
        "too, so compare with the held-out accuracy above."
    )


def build(demo: gr.Blocks) -> None:
    Spec = reward.RewardSpec
    with gr.Row():
        with gr.Column(elem_id="rm-settings"):
            gr.Markdown("#### Train a reward model")
            source = bind(Spec, "from_store", gr.Radio(list(SOURCES), value=SOURCES[1], label="Pairs"))
            upload = bind(
                Spec,
                "data",
                gr.File(label="Preference file (trl format)", file_types=list(SUFFIXES), type="filepath"),
            )
            with gr.Row():
                settings = controls(Spec, ["out", "overwrite"], out={"value": "my-reward-model"})
            with gr.Row():
                settings |= controls(Spec, ["epochs", "max_steps", "learning_rate", "batch_size"])
            settings |= controls(Spec, ["skip_bad_rows"])
            with gr.Accordion("More settings", open=False):
                settings |= controls(Spec, ["max_length", "lora_r", "lora_alpha", "eval_fraction", "seed"])
            gr.Markdown(
                "<span class='muted'>The base model gets a one-number score head; LoRA adapts the body and the head is "
                "trained in full. Held-out pairs use prompts never seen in training.</span>"
            )
            start = gr.Button("Train reward model", variant="primary")
        with gr.Column():
            gr.Markdown("#### Reward models")
            table = gr.Dataframe(interactive=False, wrap=True, pinned_columns=1)
            refresh = gr.Button("Refresh", size="sm")
            pick = LiveDropdown(reward_model_names, fallback=FIRST, label="Reward model", elem_id="reward-pick")
            prompt = gr.Textbox(label="Prompt", lines=2, value="What is the capital of France?")
            response = gr.Textbox(label="Response", lines=3, value="The capital of France is Paris.")
            score_button = gr.Button("Score")
            scored = gr.Markdown()
            agree_button = gr.Button("Agreement with the human labels")
            agreed = gr.Markdown()
    panel = jobs_panel.build(demo, ("reward",), SERIES, title="Reward-model training jobs")

    def refresh_models(made: str | None = None):
        names = reward_model_names()
        values = [choice[1] if isinstance(choice, tuple) else choice for choice in names]
        return models_table(), gr.update(choices=names, value=made if made in values else first_value(names))

    gr.on([refresh.click, demo.load], refresh_models, None, [table, pick], api_name="reward_models")
    jobs_panel.when_succeeded(panel, lambda job: refresh_models(job.name), [], [table, pick])
    on_submit(
        start,
        start_training,
        [source, upload],
        panel.job,
        form="rm-settings",
        settings=settings,
        api_name="start_reward_training",
    )
    jobs_panel.loads_capsules(panel, settings)
    score_button.click(score_text, [pick, prompt, response], scored, api_name="reward_score")
    agree_button.click(agreement, pick, agreed, api_name="reward_agreement")
