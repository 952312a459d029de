"""The job panel every training tab shares: pick a job, watch progress, loss and log, cancel.

It polls the job table with a gr.Timer, so progress survives page reloads and app restarts
(the job lives in its own process and in the database, not in this page).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
from .errors import UserError
from .guard import admin_only
import pandas as pd

from pipelines import jobs

POLL_SECONDS = 1.5


@dataclass
class JobPanel:
    job: gr.Dropdown
    status: gr.Markdown
    progress: gr.HTML
    plot: gr.LinePlot
    log: gr.Textbox
    cancel: gr.Button
    timer: gr.Timer
    kinds: tuple[str, ...]
    series: dict[str, str]

    @property
    def outputs(self) -> list[Any]:
        return [self.status, self.progress, self.plot, self.log, self.cancel]


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return time.strftime("%H:%M", time.localtime(timestamp))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60:02d}s"


def job_choices(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(f"{j.name} · {j.kind} · {_ago(j.created_at)}", j.id) for j in jobs.list_jobs(50, kinds)]


def refresh_choices(kinds: tuple[str, ...], selected: str | None = None) -> dict:
    choices = job_choices(kinds)
    ids = [value for _, value in choices]
    value = selected if selected in ids else (ids[0] if ids else None)
    return gr.update(choices=choices, value=value)


def progress_html(job: jobs.JobInfo) -> str:
    percent = 100 * (1.0 if job.status == jobs.SUCCEEDED else job.progress)
    colour = {"succeeded": "#16a34a", "failed": "#dc2626", "cancelled": "#9ca3af", "interrupted": "#f59e0b"}.get(job.status, "#2563eb")
    steps = f"step {job.step}/{job.total_steps} · " if job.total_steps else ""
    eta = f" · ETA {_duration(job.eta_seconds)}" if job.status == jobs.RUNNING and job.eta_seconds else ""
    return (
        f"<div class='job-progress'><div class='bar' style='width:{percent:.1f}%;background:{colour}'></div></div>"
        f"<p class='muted'>{steps}{percent:.0f}% · elapsed {_duration(job.elapsed)}{eta}</p>"
    )


def metrics_frame(job_id: str, series: dict[str, str]) -> pd.DataFrame:
    rows = []
    for record in jobs.read_metrics(job_id):
        for key, label in series.items():
            if key in record and record.get("step") is not None:
                rows.append({"step": int(record["step"]), "value": float(record[key]), "series": label})
    return pd.DataFrame(rows, columns=["step", "value", "series"])


def render(job_id: str | None, series: dict[str, str]):
    """Status line, progress bar, metric curves, log tail and the Cancel button for a job."""
    if not job_id:
        empty = pd.DataFrame(columns=["step", "value", "series"])
        return "No job selected yet.", "", empty, "", gr.update(interactive=False)
    try:
        job = jobs.get(job_id)
    except jobs.JobError as error:
        raise UserError(str(error)) from error
    badge = {"queued": "⏳", "running": "🏃", "succeeded": "✅", "failed": "❌", "cancelled": "⏹", "interrupted": "⚠️"}[job.status]
    where = " (started from the CLI)" if job.foreground else ""
    status = f"{badge} **{html.escape(job.name)}** — {job.kind} — **{job.status}**{where}  \n{html.escape(job.message)}"
    return (
        status,
        progress_html(job),
        metrics_frame(job_id, series),
        jobs.tail_log(job_id, 40),
        gr.update(interactive=not job.done and not job.cancel_requested),
    )


@admin_only("cancel training jobs")
def cancel(job_id: str | None, request: gr.Request = None) -> str:
    if not job_id:
        raise UserError("Select a job first.")
    try:
        job = jobs.manager().cancel(job_id)
    except jobs.JobError as error:
        raise UserError(str(error)) from error
    return f"Cancel requested for **{html.escape(job.name)}** ({job.status})."


def build(demo: gr.Blocks, kinds: tuple[str, ...], series: dict[str, str], *, title: str = "Jobs") -> JobPanel:
    with gr.Group():
        gr.Markdown(f"#### {title}")
        with gr.Row():
            job = gr.Dropdown(choices=job_choices(kinds), label="Job", scale=5, allow_custom_value=False)
            refresh = gr.Button("↻", scale=1, min_width=40, size="sm")
            cancel_button = gr.Button("Cancel job", variant="stop", scale=1, interactive=False)
        status = gr.Markdown()
        progress = gr.HTML()
        plot = gr.LinePlot(x="step", y="value", color="series", title="Live metrics", height=260, x_title="step")
        log = gr.Textbox(label="Log (last lines)", lines=8, max_lines=8, interactive=False, autoscroll=True)
    timer = gr.Timer(POLL_SECONDS)
    panel = JobPanel(job, status, progress, plot, log, cancel_button, timer, kinds, series)
    refresh.click(lambda current: refresh_choices(kinds, current), job, job, api_visibility="private")
    # choices are read when the page loads (newest job selected): jobs started since app start appear
    demo.load(lambda: refresh_choices(kinds), None, job, api_visibility="private")
    job.change(lambda job_id: render(job_id, series), job, panel.outputs, api_visibility="private")
    timer.tick(lambda job_id: render(job_id, series), job, panel.outputs, api_visibility="private", show_progress="hidden")
    cancel_button.click(cancel, job, status, api_name=f"cancel_{kinds[0]}_job")
    return panel
