"""Align sub-tab (Preferences): DPO or RLOO jobs on the policy, evaluation, and aligned-vs-base items to vote on."""

from __future__ import annotations

import html
import random
import uuid
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.config import PREFERENCE_SAMPLE
from pipelines.engine import adapters, models
from pipelines.engine.sampling import SamplingParams
from pipelines.labels import comparisons, preferences
from pipelines.reasoning import grpo
from pipelines.store import jobs
from pipelines.store.files import copy_upload
from pipelines.train import reward
from pipelines.train.align import common, dpo, evaluate, rloo

from . import constitution as constitution_panel
from . import grpo as grpo_panel
from . import jobs_panel
from .controls import MODEL_EVENTS, how_it_works, on_submit, refuse_out_of_range
from .errors import UserError
from .guard import admin_only, signed_in
from .pickers import FIRST, LiveDropdown, first_value
from .sidebar import annotator_name
from .spec_controls import bind, build_spec, control, controls

METHODS = (
    "DPO (from preference pairs)",
    "RLOO (reward model + KL penalty)",
    "GRPO (verifiable rewards: rules check the answers)",
)
PAIR_SOURCES = ("Labels in the store", "Bundled sample (clear-cut pairs)", "Upload a file")
PROMPT_SOURCES = ("Prompts in the store", "Bundled sample prompts", "Upload a file")
SAMPLE = PREFERENCE_SAMPLE
SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
SERIES = {
    "loss": "loss",
    "rewards/margins": "reward margin (DPO)",
    "eval_rewards/margins": "held-out margin (DPO)",
    "rewards/accuracies": "pair accuracy (DPO)",
    "reward": "mean reward (RLOO, GRPO)",
    "kl": "KL to reference (RLOO, GRPO)",
    "rewards/correctness/mean": "correctness reward (GRPO)",
    "rewards/format/mean": "format reward (GRPO)",
}
KINDS = ("dpo", "rloo", "grpo")
KINDS_SERIES = {  # what each job kind logs (the plot shows only its own)
    "dpo": ("loss", "rewards/margins", "eval_rewards/margins", "rewards/accuracies"),
    "rloo": ("loss", "reward", "kl"),
    "grpo": ("reward", "kl", "rewards/correctness/mean", "rewards/format/mean"),
}
# the evaluation's rows, verdict and rewards before the long answers, so a narrow column shows them
EVAL_COLUMNS = {
    "prompt": "prompt",
    "outcome": "adapter",
    "reward_base": "reward base",
    "reward_adapter": "reward adapter",
    "base": "base answer",
    "adapter": "adapter answer",
}
EVAL_PROMPTS = 24
DPO_MORE = ("batch_size", "max_length", "lora_r", "lora_alpha", "eval_fraction", "seed", "skip_bad_rows")
RLOO_MORE = ("max_completion_length", "temperature", "lora_r", "lora_alpha", "seed")


def aligned_adapters() -> list[tuple[str, str]]:
    return adapters.choices()


def reward_models() -> list[tuple[str, str]]:
    return reward.choices()


def _file_input(source: str, sources: tuple[str, ...], upload: str | None, job_id: str, what: str) -> str | None:
    if source == sources[1]:
        return str(SAMPLE)
    if source == sources[2]:
        if not upload:
            raise UserError(f"Choose a {what} file.")
        return str(
            copy_upload(upload, jobs.job_dir(job_id) / "inputs", max_bytes=200_000_000, allowed_suffixes=SUFFIXES)
        )
    return None


@admin_only("start training")
def start_job(
    method: str,
    pair_source: str,
    pair_upload: str | None,
    prompt_source: str,
    prompt_upload: str | None,
    shown: str | None = None,
    request: gr.Request | None = None,
    **settings: Any,
):
    """Validate everything that can fail before a model loads, then queue the job.

    `settings` are the specs' fields by name: `out` and `overwrite` for every method, the others
    prefixed `dpo_`, `rloo_` or `grpo_` (GRPO's problem source, uploads and rewards by their own names).
    """
    refuse_out_of_range(shown)
    job_id = uuid.uuid4().hex[:12]
    shared: dict[str, Any] = {
        "out": str(settings.get("out") or "").strip(),
        "overwrite": bool(settings.get("overwrite")),
    }
    if method == METHODS[0]:
        data = _file_input(pair_source, PAIR_SOURCES, pair_upload, job_id, "preference")
        spec = build_spec(dpo.DPOSpec, settings, "dpo_", data=data, from_store=data is None, **shared)
        common.check_new_adapter(spec.out, spec.overwrite)
        reward.load_pairs(spec)
        kind = "dpo"
    elif method == METHODS[2]:
        spec = grpo_panel.spec_from(job_id, shared, settings)
        kind = "grpo"
    else:
        if not settings.get("rloo_reward_model"):
            raise UserError("Choose a reward model (train one in the Reward model tab first).")
        prompts = _file_input(prompt_source, PROMPT_SOURCES, prompt_upload, job_id, "prompt")
        spec = build_spec(rloo.RLOOSpec, settings, "rloo_", prompts=prompts, **shared)
        rloo.check(spec)
        kind = "rloo"
    jobs.start(kind, spec.out, spec.to_dict(), job_id=job_id)
    steps = f"{spec.max_steps} steps" if spec.max_steps > 0 else f"{spec.epochs:g} epoch(s)"
    gr.Info(f"{kind.upper()} job {spec.out!r} started: {steps}; progress appears below.")
    return jobs_panel.refresh_choices(KINDS, job_id)


def _eval_prompts(source: str, upload: str | None) -> list[list[preferences.Message]]:
    if source == PROMPT_SOURCES[2]:
        if not upload:
            raise UserError("Choose a prompt file.")
        return common.load_prompts(upload)
    if source == PROMPT_SOURCES[1]:
        prompts = common.load_prompts(str(SAMPLE))
        random.Random(0).shuffle(prompts)
        return prompts
    return common.load_prompts(None)


def run_evaluation(
    adapter: str | None,
    reward_model: str | None,
    source: str,
    upload: str | None,
    n: float,
    max_new_tokens: float,
    progress: gr.Progress = gr.Progress(),
):
    if not adapter or not reward_model:
        raise UserError("Choose an adapter and a reward model.")
    prompts = _eval_prompts(source, upload)[: int(n)]
    progress(0, desc=f"answering {len(prompts)} prompts with the base model and {adapter}")
    report = evaluate.evaluate(
        models.get_handle(),
        adapter,
        reward_model,
        prompts,
        SamplingParams(temperature=0, max_new_tokens=int(max_new_tokens)),
        progress=lambda done, total: progress(done / total, desc=f"{done} / {total} prompts"),
    )
    summary = (
        f"On **{report['n']}** prompts, judged by **{html.escape(reward_model)}**: **{html.escape(adapter)}** wins "
        f"**{report['win_rate']:.0%}** against the base model ({report['wins']} better, {report['ties']} ties, "
        f"{report['losses']} worse; a tie is an identical answer or rewards within ±{report['tie_tolerance']:g}, "
        f"and counts half); mean reward **{report['mean_reward_adapter']:+.3f}** vs **{report['mean_reward_base']:+.3f}**. "
        "A reward model is a proxy: check with human votes below."
    )
    server = models.get_handle().remote_server
    if server is not None:
        summary += (
            f"  \nThe base answers came from **{html.escape(server.model)}** on the {server.kind} server "
            f"(`{server.base_url}`); the adapter's from the local {html.escape(models.get_handle().name)} with it: "
            "with another model on the server, this compares two models, not the adapter's effect."
        )
    table = pd.DataFrame(report["rows"], columns=list(EVAL_COLUMNS)).rename(columns=EVAL_COLUMNS)
    return summary, table


@signed_in("queue comparisons for everyone's labelling")
def queue_for_humans(
    adapter: str | None,
    source: str,
    upload: str | None,
    n: float,
    max_new_tokens: float,
    request: gr.Request | None = None,
    progress: gr.Progress = gr.Progress(),
):
    """Comparison items, aligned vs base (sources hidden, order random), waiting in the Label queue."""
    if not adapter:
        raise UserError("Choose an adapter.")
    prompts = _eval_prompts(source, upload)[: int(n)]
    params = SamplingParams(temperature=0.7, max_new_tokens=int(max_new_tokens))
    who = annotator_name(None, request) or None
    made = comparisons.queue_items(
        models.get_handle(),
        prompts,
        [comparisons.Source(None, params), comparisons.Source(adapter, params)],
        origin=f"align:{adapter}",
        created_by=who,
        progress=lambda done, total: progress(done / total, desc=f"item {done + 1} / {total}"),
    )
    return (
        f"Queued **{made}** comparison items ({html.escape(adapter)} vs base) — vote on them in the **Label** tab; the "
        "Dataset tab's leaderboard then ranks the two sources from human votes."
    )


def build(demo: gr.Blocks) -> dict[str, Any]:
    with gr.Row():
        with gr.Column(elem_id="align-settings"):
            gr.Markdown("#### Improve the policy")
            method = gr.Radio(list(METHODS), value=METHODS[0], label="Method")
            with gr.Row():
                name = control(dpo.DPOSpec, "out", value="aligned")
                overwrite = control(dpo.DPOSpec, "overwrite")
            bind(rloo.RLOOSpec, "out", name)
            bind(rloo.RLOOSpec, "overwrite", overwrite)
            with gr.Group(visible=True) as dpo_box:
                pair_source = gr.Radio(list(PAIR_SOURCES), value=PAIR_SOURCES[1], label="Preference pairs")
                pair_upload = gr.File(label="Pairs (trl format)", type="filepath")
                bind(dpo.DPOSpec, "from_store", pair_source)
                bind(dpo.DPOSpec, "data", pair_upload)
                with gr.Row():
                    dpo_settings = controls(dpo.DPOSpec, ["beta", "loss_type"])
                with gr.Row():
                    dpo_settings |= controls(dpo.DPOSpec, ["epochs", "max_steps", "learning_rate"])
                with gr.Accordion("More DPO settings", open=False):
                    dpo_settings |= controls(dpo.DPOSpec, DPO_MORE)
            with gr.Group(visible=False) as rloo_box:
                reward_model = LiveDropdown(
                    reward_models, fallback=FIRST, label="Reward model", info="from the Reward model tab"
                )
                prompt_source = gr.Radio(list(PROMPT_SOURCES), value=PROMPT_SOURCES[1], label="Prompts")
                prompt_upload = gr.File(label="Prompts (a 'prompt' column)", type="filepath")
                bind(rloo.RLOOSpec, "reward_model", reward_model)
                bind(rloo.RLOOSpec, "prompts", prompt_source)
                bind(rloo.RLOOSpec, "prompts", prompt_upload)
                with gr.Row():
                    rloo_settings = controls(rloo.RLOOSpec, ["beta", "num_generations", "prompts_per_step"])
                with gr.Row():
                    rloo_settings |= controls(rloo.RLOOSpec, ["max_steps", "learning_rate"])
                with gr.Accordion("More RLOO settings", open=False):
                    rloo_settings |= controls(rloo.RLOOSpec, RLOO_MORE)
            with gr.Group(visible=False) as grpo_box:
                grpo_parts = grpo_panel.build_form()
            bind(grpo.GRPOSpec, "out", name)
            bind(grpo.GRPOSpec, "overwrite", overwrite)
            gr.Markdown(
                "<span class='muted'>LoRA on the base model; the reference is the base model itself (the adapter switched "
                "off). Precision comes from the hardware. The adapter appears in every adapter picker.</span>"
            )
            start = gr.Button("Start", variant="primary")
        with gr.Column():
            gr.Markdown("#### Did it get better?")
            with gr.Row():
                eval_adapter = LiveDropdown(aligned_adapters, fallback=FIRST, label="Adapter")
                eval_rm = LiveDropdown(reward_models, fallback=FIRST, label="Judge (reward model)")
                refresh = gr.Button("↻", size="sm", min_width=40)
            eval_source = gr.Radio(list(PROMPT_SOURCES), value=PROMPT_SOURCES[1], label="Prompts")
            eval_upload = gr.File(label="Prompts (a 'prompt' column)", type="filepath")
            with gr.Row():
                eval_n = gr.Slider(1, 200, value=EVAL_PROMPTS, step=1, label="Prompts")
                eval_tokens = control(SamplingParams, "max_new_tokens", value=96, info=None)
            with gr.Row():
                eval_button = gr.Button("Evaluate with the reward model")
                queue_button = gr.Button("⚖ Queue aligned vs base for human votes")
            eval_summary = gr.Markdown()
            eval_table = gr.Dataframe(
                headers=list(EVAL_COLUMNS.values()),
                interactive=False,
                wrap=True,
                max_height=320,
                max_chars=160,
                column_widths=["20%", "10%", "10%", "10%", "25%", "25%"],
            )
    panel = jobs_panel.build(demo, KINDS, SERIES, title="Alignment jobs", kinds_series=KINDS_SERIES)
    grpo_panel.build_groups(panel.job)  # one recorded group: answers, rewards, advantages
    constitution_panel.build(pair_source, pair_upload)  # AI feedback: its pairs become DPO's data
    how_it_works("align", "How it works: RL with a KL penalty (RLOO), verifiable rewards (GRPO), DPO")

    method.change(
        lambda m: tuple(gr.update(visible=m == shown) for shown in METHODS),
        method,
        [dpo_box, rloo_box, grpo_box],
        api_visibility="private",
    )

    def refresh_lists():
        names, rms = aligned_adapters(), reward_models()
        return (
            gr.update(choices=names, value=first_value(names)),
            gr.update(choices=rms, value=first_value(rms)),
            gr.update(choices=rms, value=first_value(rms)),
        )

    refresh.click(refresh_lists, None, [eval_adapter, eval_rm, reward_model], api_visibility="private")
    jobs_panel.when_succeeded(panel, lambda job: refresh_lists(), [], [eval_adapter, eval_rm, reward_model])
    form = {
        "out": name,
        "overwrite": overwrite,
        **{f"dpo_{k}": c for k, c in dpo_settings.items()},
        "rloo_reward_model": reward_model,
        **{f"rloo_{k}": c for k, c in rloo_settings.items()},
        **grpo_parts,
    }
    on_submit(
        start,
        start_job,
        [method, pair_source, pair_upload, prompt_source, prompt_upload],
        panel.job,
        form="align-settings",
        settings=form,
        api_name="start_alignment",
    )
    jobs_panel.loads_capsules(panel, form, method=method, labels=dict(zip(KINDS, METHODS, strict=True)))
    eval_button.click(
        run_evaluation,
        [eval_adapter, eval_rm, eval_source, eval_upload, eval_n, eval_tokens],
        [eval_summary, eval_table],
        api_name="align_eval",
        **MODEL_EVENTS,
    )
    queue_button.click(
        queue_for_humans,
        [eval_adapter, eval_source, eval_upload, eval_n, eval_tokens],
        eval_summary,
        api_name="align_queue",
        **MODEL_EVENTS,
    )
    return {"align_eval": [eval_adapter, eval_rm]}  # what a lesson step may set: the adapter judged, and by what
