"""GRPO in the Align sub-tab: the form (problems, rule-based rewards, a reward file run in the
sandbox) and one recorded group as the update sees it — answers, rewards, advantages, and the
tokens each answer's advantage pushes up or down (pipelines/reasoning/grpo.py)."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.engine import models
from pipelines.reasoning import grpo, rewards, strategies
from pipelines.store import jobs
from pipelines.store.files import copy_upload

from .errors import UserError
from .spec_controls import bind, build_spec, controls

PROBLEM_SOURCES = ("Bundled one-step word problems", "Bundled word problems (harder)", "Upload a file")
SHOWN = ("num_generations", "beta", "epsilon", "temperature")
STEPS = ("max_steps", "learning_rate")
MORE = ("style", "prompts_per_step", "max_completion_length", "held_out", "lora_r", "lora_alpha", "seed")
PRESETS_HELP = "  \n".join(f"**{name}**: {meaning}" for name, meaning in rewards.PRESETS.items())


# advantages are (r - mean) / std: within about ±2 for small groups; 0 exactly when a group is constant
BIN_EDGES = [-100.0, -1.5, -0.5, -0.01, 0.01, 0.5, 1.5, 100.0]
BIN_LABELS = ["< −1.5", "−1.5…−0.5", "−0.5…0", "0", "0…0.5", "0.5…1.5", "> 1.5"]


def _uploaded(upload: gr.File) -> gr.State:
    """The path of what was uploaded (None once cleared), kept for Start."""
    path = gr.State(None)
    upload.change(lambda value: value, upload, path, api_visibility="private")
    return path


def build_form() -> dict[str, Any]:
    """The GRPO settings (inside the Align form); the components by the names start_job reads."""
    parts: dict[str, Any] = {}
    parts["problem_source"] = gr.Radio(list(PROBLEM_SOURCES), value=PROBLEM_SOURCES[0], label="Problems")
    # uploads reach Start through States, so /start_alignment keeps the parameters its callers know
    problems = bind(
        grpo.GRPOSpec,
        "prompts",
        gr.File(label="Problems (JSONL: 'question' and a numeric 'answer')", type="filepath", visible=False),
    )
    parts["problems"] = _uploaded(problems)
    parts["reward"] = bind(
        grpo.GRPOSpec,
        "reward",
        gr.Textbox(
            value=", ".join(grpo.GRPOSpec(out="x").reward),
            label="Rewards (NAME or NAME:WEIGHT, comma-separated)",
            info="correctness, pal, format, length, number; file = the reward file below",
            elem_id="grpo-rewards",
        ),
    )
    with gr.Accordion("What each reward checks", open=False):
        gr.Markdown(PRESETS_HELP)
    reward_file = bind(
        grpo.GRPOSpec,
        "reward_file",
        gr.File(label="Reward file (optional): def reward(prompt, completion, answer) -> float", type="filepath"),
    )
    parts["reward_file"] = _uploaded(reward_file)
    with gr.Row():
        settings = controls(grpo.GRPOSpec, SHOWN)
    with gr.Row():
        settings |= controls(grpo.GRPOSpec, STEPS)
    with gr.Accordion("More GRPO settings", open=False):
        settings |= controls(grpo.GRPOSpec, MORE)
    parts["problem_source"].change(
        lambda source: gr.update(visible=source == PROBLEM_SOURCES[2]),
        parts["problem_source"],
        problems,
        api_visibility="private",
    )
    return parts | {f"grpo_{name}": component for name, component in settings.items()}


def _rewards(text: str | None) -> list[str]:
    return [item for item in re.split(r"[,\s]+", text or "") if item]


def spec_from(job_id: str, shared: dict[str, Any], settings: dict[str, Any]) -> grpo.GRPOSpec:
    """The GRPO spec from the form, with uploads copied into the job's own directory; checked."""
    source = settings.get("problem_source") or PROBLEM_SOURCES[0]
    inputs = jobs.job_dir(job_id) / "inputs"
    problems = None
    if source == PROBLEM_SOURCES[1]:
        problems = str(strategies.PROBLEMS_FILE)
    elif source == PROBLEM_SOURCES[2]:
        if not settings.get("problems"):
            raise UserError("Choose a problems file.")
        problems = str(
            copy_upload(settings["problems"], inputs, max_bytes=20_000_000, allowed_suffixes=(".jsonl", ".json"))
        )
    reward_file = None
    if settings.get("reward_file"):
        reward_file = str(
            copy_upload(
                settings["reward_file"], inputs, max_bytes=rewards.MAX_REWARD_SOURCE * 4, allowed_suffixes=(".py",)
            )
        )
    spec = build_spec(
        grpo.GRPOSpec,
        settings,
        "grpo_",
        prompts=problems,
        reward=_rewards(settings.get("reward")),
        reward_file=reward_file,
        **shared,
    )
    grpo.check(spec)
    return spec


# --- one group, as the update sees it --------------------------------------------------------------


PUSHED = {"pushed up": "#54a24b", "pushed down": "#e45756"}


def _tokens(text: str, advantage: float) -> list[tuple[str, str | None]]:
    """Each token of an answer with the push its answer's advantage gives it (the same for all of an
    answer's tokens: GRPO's advantage is per answer)."""
    tokenizer = models.get_handle().tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:200]
    push = "pushed up" if advantage > 1e-9 else "pushed down" if advantage < -1e-9 else None
    return [(tokenizer.decode([i]), push) for i in ids]


SELECTED_JOB = "the job selected above"


def recorded_runs() -> list[str]:
    """Where groups can be read from: the selected job, or a bundled GRPO run (its groups ship with it)."""
    return [SELECTED_JOB, *grpo.bundled_runs()]


def _curves(job_id: str | None, run: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each reward's mean and spread per step, and the answers' length: a bundled run's from its
    meta.json, a job's from the metrics trl logged."""
    if run and run != SELECTED_JOB:
        metrics = json.loads((grpo.bundled_run(run) / "meta.json").read_text(encoding="utf-8"))["metrics"]
        found = {key: metrics.get(key, {}) for key in ("rewards", "reward_std")}
        found["completion_length"] = metrics.get("completion_length", [])
    else:
        found = grpo.history(jobs.read_metrics(job_id or ""))
    rows = [
        {"step": step, "value": value, "series": f"{name} {what}"}
        for key, what in (("rewards", "mean"), ("reward_std", "spread (std)"))
        for name, values in found[key].items()
        for step, value in enumerate(values, start=1)
    ]
    lengths = [{"step": step, "tokens": value} for step, value in enumerate(found["completion_length"], start=1)]
    return pd.DataFrame(rows, columns=["step", "value", "series"]), pd.DataFrame(lengths, columns=["step", "tokens"])


def show_group(
    job_id: str | None, run: str | None, step: float | None
) -> tuple[str, pd.DataFrame, list, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A recorded group (the first of that step's batch; 0 = the newest step) of the selected job or
    a bundled run, with the advantage distribution of the last steps."""
    if run and run != SELECTED_JOB:
        directory = grpo.bundled_run(run)
    elif job_id:
        directory = jobs.job_dir(job_id)
    else:
        raise UserError("Select a GRPO job in the list above, or a bundled run.")
    batches = grpo.read_groups(directory)
    if not batches:
        raise UserError("This job has recorded no groups yet (GRPO jobs record them from their first step).")
    wanted = int(step or 0)
    found = [b for b in batches if b["step"] == wanted]
    batch = batches[-1] if wanted <= 0 else found[0] if found else None
    if batch is None:
        raise UserError(f"No step {wanted} recorded; steps {batches[0]['step']}–{batches[-1]['step']} are.")
    group = batch["groups"][0]
    names = list(group["rewards"])
    table = pd.DataFrame(
        [
            [
                text,
                *(group["rewards"][n][k] for n in names),
                round(group["total"][k], 3),
                round(group["advantages"][k], 3),
            ]
            for k, text in enumerate(group["completions"])
        ],
        columns=["answer", *names, "total reward", "advantage"],
    )
    best = max(range(len(group["total"])), key=lambda k: group["advantages"][k])
    worst = min(range(len(group["total"])), key=lambda k: group["advantages"][k])
    highlighted = _tokens(group["completions"][best], group["advantages"][best])
    if worst != best:
        highlighted += [("\n—\n", None), *_tokens(group["completions"][worst], group["advantages"][worst])]
    spread = max(group["total"]) - min(group["total"])
    note = (
        f"Step **{batch['step']}**, problem: *{html.escape(group['prompt'][:300])}*  \n"
        "Each answer's **advantage** is its total reward minus the group's mean, divided by the group's standard "
        "deviation: A = (r − mean) / std. Every token of an answer with A > 0 is made more likely (green), every "
        "token of one with A < 0 less likely (red), through the clipped ratio min(ρA, clip(ρ, 1−ε, 1+ε)A)."
    )
    if spread < 1e-9:
        note += "  \n**This group's answers all scored the same: every advantage is 0, and it teaches nothing.**"
    recent = [a for b in batches[-20:] for g in b["groups"] for a in g["advantages"]]
    bins = pd.cut(pd.Series(recent, dtype=float), bins=BIN_EDGES, labels=BIN_LABELS, include_lowest=True)
    histogram = bins.value_counts(sort=False).reindex(BIN_LABELS, fill_value=0)
    curves, lengths = _curves(job_id, run)
    return (
        note,
        table,
        highlighted,
        pd.DataFrame({"advantage": BIN_LABELS, "answers": list(histogram)}),
        curves,
        lengths,
    )


def build_groups(job: Any) -> None:
    """The group view; `job` is the Alignment jobs panel's job picker."""
    with gr.Accordion("GRPO: one group, as the update sees it", open=False):
        with gr.Row():
            runs = recorded_runs()
            run = gr.Dropdown(
                runs,
                value=runs[-1] if len(runs) > 1 else runs[0],
                label="Recorded run",
                info="a bundled run is ready-made; a job of yours records its groups as it trains",
                scale=2,
            )
            step = gr.Number(0, label="Step (0 = the newest)", precision=0, minimum=0, scale=1)
            show = gr.Button("Show the group", scale=1, elem_id="grpo-show-group")
        note = gr.Markdown(elem_id="grpo-group-note")
        table = gr.Dataframe(interactive=False, wrap=True, max_height=320, elem_id="grpo-group-table")
        tokens = gr.HighlightedText(
            label="Best and worst answer: each token pushed up (green) or down (red) by its answer's advantage",
            combine_adjacent=False,
            show_legend=True,
            color_map=PUSHED,
            elem_id="grpo-group-tokens",
        )
        with gr.Row():
            histogram = gr.BarPlot(
                x="advantage",
                y="answers",
                title="Advantages of the last 20 steps' answers",
                height=220,
                sort=BIN_LABELS,
            )
            lengths = gr.LinePlot(x="step", y="tokens", title="Answer length (mean tokens) per step", height=220)
        curves = gr.LinePlot(
            x="step", y="value", color="series", title="Each reward per step: mean and spread", height=260
        )
    show.click(show_group, [job, run, step], [note, table, tokens, histogram, curves, lengths], api_name="grpo_group")
