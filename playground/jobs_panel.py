"""The job panel every training tab shares: pick a job, watch progress, loss and log, cancel.

It polls the job table with a gr.Timer, so progress survives page reloads and app restarts
(the job lives in its own process and in the database, not in this page).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import knobs
from pipelines.replay import record as capsule_record
from pipelines.store import jobs

from . import capsule_files
from .errors import UserError
from .guard import admin_only, signed_in
from .pickers import FIRST, LiveDropdown, normalise
from .spec_controls import BOUND

POLL_SECONDS = 1.5


@dataclass
class JobPanel:
    job: gr.Dropdown
    status: gr.Markdown
    progress: gr.HTML
    plot: gr.LinePlot
    log: gr.HTML
    cancel: gr.Button
    timer: gr.Timer
    kinds: tuple[str, ...]
    series: dict[str, str]
    load: gr.UploadButton  # a job capsule, back into the form (wired by loads_capsules: the form is the tab's)
    capsule_note: gr.Markdown

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
    return (
        f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m {seconds % 60:02d}s"
    )


def job_choices(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(f"{j.name} · {j.kind} · {_ago(j.created_at)}", j.id) for j in jobs.list_jobs(50, kinds)]


def refresh_choices(kinds: tuple[str, ...], selected: str | None = None) -> dict:
    choices = job_choices(kinds)
    ids = [value for _, value in choices]
    value = selected if selected in ids else (ids[0] if ids else None)
    return gr.update(choices=choices, value=value)


STATUS_COLOURS = {"succeeded": "#16a34a", "failed": "#dc2626", "cancelled": "#9ca3af", "interrupted": "#f59e0b"}


def _bar(fraction: float, colour: str) -> str:
    return f"<div class='job-progress'><div class='bar' style='width:{100 * fraction:.1f}%;background:{colour}'></div></div>"


def _phase_line(phase: jobs.Phase, job: jobs.JobInfo) -> str:
    """One phase: what it is, how far, how long it took or is expected to take."""
    running = phase.state == "running" and job.status == jobs.RUNNING
    stopped = phase.state == "running" and not running  # the job ended (failed, cancelled) inside this phase
    icon = "✅" if phase.state == "done" else "⏹" if stopped else "▶️" if running else "○"
    count = ""
    if phase.total and phase.state != "pending":
        count = (
            f" · step {phase.done}/{phase.total}"
            if phase.unit == "steps"
            else f" · {phase.done}/{phase.total} {phase.unit}".rstrip()
        )
    timing = ""
    if phase.state != "pending":
        end = job.finished_at if stopped else None
        timing = f"{_duration(phase.elapsed(end))}"
        eta = phase.eta() if running else None
        if eta is not None:
            timing += f" · ETA {_duration(eta)}"
    note = f"<br><span class='muted'>{html.escape(phase.note)}</span>" if phase.note else ""
    bar = _bar(phase.fraction, "#2563eb") if running else ""
    return (
        f"<div class='job-phase {phase.state}'><span>{icon} {html.escape(phase.label)}{count}</span>"
        f"<span class='muted'>{timing}</span>{note}{bar}</div>"
    )


def progress_html(job: jobs.JobInfo, phases: list[jobs.Phase] | None = None) -> str:
    """The job's phases, each with its own progress and clock; one bar for jobs from before phases existed."""
    if phases:
        total = f"<p class='muted'>elapsed {_duration(job.elapsed)} in all</p>" if job.started_at else ""
        return "<div class='job-phases'>" + "".join(_phase_line(p, job) for p in phases) + "</div>" + total
    percent = 100 * (1.0 if job.status == jobs.SUCCEEDED else job.progress)
    colour = STATUS_COLOURS.get(job.status, "#2563eb")
    steps = f"step {job.step}/{job.total_steps} · " if job.total_steps else ""
    eta = f" · ETA {_duration(job.eta_seconds)}" if job.status == jobs.RUNNING and job.eta_seconds else ""
    return (
        _bar(percent / 100, colour)
        + f"<p class='muted'>{steps}{percent:.0f}% · elapsed {_duration(job.elapsed)}{eta}</p>"
    )


def log_html(text: str) -> str:
    """The log tail, newest line in view: a reversed flex box keeps a scroll box anchored at its
    bottom (a Textbox refilled every poll jumped back to its oldest line)."""
    body = html.escape(text) if text else "<span class='muted'>nothing logged yet</span>"
    return f"<div class='job-log'><pre>{body}</pre></div>"


SERIES_COLOURS = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6")


def _typed(rows: list[dict[str, Any]], every: Sequence[str]) -> pd.DataFrame | None:
    """The plot's data: numbers as numbers, and every series the job will log present from the start.

    gradio's LinePlot (6.x) draws only the series that were in the first data it received: a series
    that appears later (train loss after the first eval loss) never gets a line or a legend entry,
    and an empty first frame leaves it blank for good. So nothing is sent until there is data, and
    the series not logged yet are present as one empty (NaN) point each, which draws nothing.
    """
    if not rows:
        return None
    present = {row["series"] for row in rows}
    first = min(row["step"] for row in rows)
    rows = rows + [{"step": first, "value": math.nan, "series": label} for label in every if label not in present]
    return pd.DataFrame(rows, columns=["step", "value", "series"]).astype({"step": "int64", "value": "float64"})


def metrics_frame(
    job_id: str,
    series: dict[str, str],
    kinds_series: dict[str, tuple[str, ...]] | None = None,
    kind: str | None = None,
) -> pd.DataFrame | None:
    """The job's logged metrics as (step, value, series) rows; `kinds_series` says which metric keys
    each job kind logs, when a panel serves several kinds (default: all of `series`). `kind` is the
    job's, when the caller has already read it (the panel polls: one database read per tick)."""
    keys = tuple(series)
    if kinds_series:
        keys = kinds_series.get(kind or jobs.get(job_id).kind, keys)
    labels = {key: series[key] for key in keys if key in series}
    rows = []
    for record in jobs.read_metrics(job_id):
        for key, label in labels.items():
            if key in record and record.get("step") is not None:
                rows.append({"step": int(record["step"]), "value": float(record[key]), "series": label})
    return _typed(rows, list(labels.values()))


def render(job_id: str | None, series: dict[str, str], kinds_series: dict[str, tuple[str, ...]] | None = None):
    """Status line, progress bar, metric curves, log tail and the Cancel button for a job."""
    if not job_id:  # no empty plot frame before there is anything to plot
        return (
            "No job selected yet.",
            "",
            gr.update(value=None, visible=False),
            log_html(""),
            gr.update(interactive=False),
        )
    job = jobs.get(job_id)
    badge = {"queued": "⏳", "running": "🏃", "succeeded": "✅", "failed": "❌", "cancelled": "⏹", "interrupted": "⚠️"}[
        job.status
    ]
    where = " (started from the CLI)" if job.foreground else ""
    status = f"{badge} **{html.escape(job.name)}** — {job.kind} — **{job.status}**{where}  \n{html.escape(job.message)}"
    frame = metrics_frame(job_id, series, kinds_series, job.kind)
    return (
        status,
        progress_html(job, jobs.read_phases(job_id)),
        gr.update(value=frame, visible=frame is not None),
        log_html(jobs.tail_log(job_id, 40)),
        gr.update(interactive=not job.done and not job.cancel_requested),
    )


@admin_only("remove ended jobs")
def forget_ended(kinds: tuple[str, ...], current: str | None, request: gr.Request | None = None) -> tuple[str, Any]:
    removed = jobs.forget_ended(kinds)
    note = (
        f"Removed {removed} cancelled, failed or interrupted job{'s' if removed != 1 else ''}."
        if removed
        else "No ended jobs to remove."
    )
    return note, refresh_choices(kinds, current)


@signed_in("save a job's capsule")
def save_capsule(job_id: str | None, request: gr.Request | None = None) -> dict:
    """The selected job's replay capsule (its whole spec, each data file's SHA-256, the weights it wrote):
    `python -m pipelines replay` trains it again and compares the weights byte for byte."""
    if not job_id:
        raise UserError("Select a job first.")
    job = jobs.get(job_id)
    return gr.update(value=capsule_files.saved(capsule_record.finished_job(job), f"{job.kind} job"), visible=True)


@admin_only("cancel training jobs")
def cancel(job_id: str | None, request: gr.Request | None = None) -> str:
    if not job_id:
        raise UserError("Select a job first.")
    job = jobs.manager().cancel(job_id)
    return f"Cancel requested for **{html.escape(job.name)}** ({job.status})."


def build(
    demo: gr.Blocks,
    kinds: tuple[str, ...],
    series: dict[str, str],
    *,
    title: str = "Jobs",
    kinds_series: dict[str, tuple[str, ...]] | None = None,
) -> JobPanel:
    if len(series) > len(SERIES_COLOURS):
        raise ValueError(f"at most {len(SERIES_COLOURS)} series in one plot, got {len(series)}")
    with gr.Group():
        gr.Markdown(f"#### {title}")
        with gr.Row():
            job = LiveDropdown(lambda: job_choices(kinds), fallback=FIRST, newest_on_load=True, label="Job", scale=5)
            refresh = gr.Button("↻", scale=1, min_width=40, size="sm")
            cancel_button = gr.Button("Cancel job", elem_classes=["stop-quiet"], scale=1, interactive=False)
            tidy = gr.Button("Remove ended", scale=1, size="sm", min_width=90)
            capsule = gr.Button("Save capsule", scale=1, size="sm", min_width=90, elem_id=f"{kinds[0]}-job-capsule")
            load = gr.UploadButton(
                "Load capsule", file_types=[".json"], scale=1, size="sm", min_width=90, elem_id=f"{kinds[0]}-job-load"
            )
        status = gr.Markdown()
        progress = gr.HTML()
        plot = gr.LinePlot(
            x="step",
            y="value",
            color="series",
            color_map=dict(zip(series.values(), SERIES_COLOURS, strict=False)),  # each series its colour in every job
            title="Live metrics",
            height=260,
            x_title="step",
            visible=False,  # shown with its first point (no empty frame)
        )
        gr.Markdown("<span class='muted'>Log (last lines)</span>")
        log = gr.HTML(log_html(""), elem_classes=["job-log-box"])
        capsule_file = gr.File(label="Replay capsule (JSON)", interactive=False, height=70, visible=False)
        capsule_note = gr.Markdown(elem_id=f"{kinds[0]}-job-capsule-note")
    timer = gr.Timer(POLL_SECONDS)
    panel = JobPanel(job, status, progress, plot, log, cancel_button, timer, kinds, series, load, capsule_note)
    refresh.click(lambda current: refresh_choices(kinds, current), job, job, api_visibility="private")
    job.change(lambda job_id: render(job_id, series, kinds_series), job, panel.outputs, api_visibility="private")
    timer.tick(
        lambda job_id: render(job_id, series, kinds_series),
        job,
        panel.outputs,
        api_visibility="private",
        show_progress="hidden",
    )
    cancel_button.click(cancel, job, status, api_name=f"cancel_{kinds[0]}_job")

    def tidy_up(current: str | None, request: gr.Request | None = None) -> tuple[str, Any]:
        return forget_ended(kinds, current, request=request)

    tidy.click(tidy_up, job, [status, job], api_visibility="private")
    capsule.click(save_capsule, job, capsule_file, api_name=f"save_{kinds[0]}_job_capsule")
    return panel


def _shown(component: Any, value: Any) -> tuple[bool, Any]:
    """The value a form control shows for a spec value (None as the control's stand-in), and whether it can."""
    if isinstance(component, (gr.File, gr.UploadButton, gr.State)):
        return False, None  # an upload is the person's to choose again
    if value is None:
        bound = getattr(component, BOUND, ())
        stand_ins = [knobs.knobs(spec_class)[name].ui_none for spec_class, name in bound]
        return (bool(stand_ins) and stand_ins[0] is not None), (stand_ins[0] if stand_ins else None)
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, (str, int, float, bool)) for item in items):
        return False, None
    if isinstance(component, gr.Textbox) and isinstance(value, list):  # e.g. GRPO's rewards, comma-separated
        return True, ", ".join(str(item) for item in value)
    if isinstance(component, LiveDropdown):
        component.choices = normalise(component.list_choices())
    choices = getattr(component, "choices", None)
    if choices is not None and not isinstance(component, (gr.Slider, gr.Number)):
        allowed = {choice[1] if isinstance(choice, tuple) else choice for choice in choices}
        if not all(item in allowed for item in items):
            return False, None
    return True, value


def form_from_capsule(
    file: str | None, kinds: tuple[str, ...], settings: dict[str, Any], method: dict[str, str] | None = None
) -> tuple[list[Any], Any, str]:
    """A job capsule's settings for the form (`settings`: field -> control, other kinds' fields prefixed
    `kind_`), the method to select (`method`: kind -> its label), and a note on what to do next."""
    document = capsule_files.opened(file, "job", "jobs panel")
    inputs = document["inputs"]
    kind, spec = inputs.get("job"), inputs.get("spec") if isinstance(inputs.get("spec"), dict) else {}
    if kind not in kinds:
        raise UserError(f"This capsule is a {kind} job: load it in the panel that trains {kind} jobs.")
    updates, missed = [], []
    for key, component in settings.items():
        field = key.removeprefix(f"{kind}_")
        if field == key and any(key.startswith(f"{other}_") for other in kinds):
            updates.append(gr.update())  # another method's setting
            continue
        shows, value = _shown(component, spec.get(field)) if field in spec else (False, None)
        updates.append(gr.update(value=value) if shows else gr.update())
        if field in spec and not shows and spec.get(field) is not None:
            missed.append(field)
    notes = [f"Loaded a **{kind}** job capsule of {document['created']}: press Start to train it again."]
    for item in inputs.get("data") or []:
        if item.get("path"):
            notes.append(
                f"It trained on **{Path(item['path']).name}** (SHA-256 `{str(item.get('sha256'))[:12]}…`): "
                "choose that file, or replay the capsule with `python -m pipelines replay`, which checks it."
            )
        elif item.get("source"):
            notes.append(f"Its {item.get('field')} came from {item['source']}.")
    if missed:
        notes.append("Not set here (choose them again): " + ", ".join(missed) + ".")
    chosen = gr.update(value=method[kind]) if method and kind in method else gr.update()
    return updates, chosen, "  \n".join(notes)


def loads_capsules(
    panel: JobPanel, settings: dict[str, Any], *, method: Any = None, labels: dict[str, str] | None = None
) -> None:
    """The panel's Load capsule fills the tab's form (`settings`, as its Start button reads them; `method`: the
    control that picks the kind, set to `labels[kind]`) from a job capsule."""
    controls = list(settings.values())

    def load(file: str | None) -> list[Any]:
        updates, chosen, note = form_from_capsule(file, panel.kinds, settings, labels)
        return [*updates, *([chosen] if method is not None else []), note]

    outputs = [*controls, *([method] if method is not None else []), panel.capsule_note]
    panel.load.upload(load, panel.load, outputs, api_name=f"load_{panel.kinds[0]}_job_capsule")


def when_succeeded(
    panel: JobPanel, refresh: Callable[..., Sequence[Any]], inputs: list[Any], outputs: list[Any]
) -> None:
    """Run `refresh(job, *inputs)` once, as soon as the watched job has succeeded, so that what it made
    appears where it is used (a picker, a table) without a Refresh or a reload (issue 42, W3).

    The panel's own poll notices the change of status; a job that had already finished when the page
    opened is shown by the page's load like any other result."""
    last = gr.State(None)
    idle = [gr.skip() for _ in outputs]

    def check(job_id: str | None, last_status: str | None, *values: Any) -> list[Any]:
        if not job_id:
            return [last_status, *idle]
        job = jobs.get(job_id)
        if job.status == jobs.SUCCEEDED and last_status not in (None, jobs.SUCCEEDED):
            return [job.status, *refresh(job, *values)]
        return [job.status, *idle]

    panel.timer.tick(
        check, [panel.job, last, *inputs], [last, *outputs], api_visibility="private", show_progress="hidden"
    )
