"""The jobs panel every training tab shares: what its live plot is sent."""

from __future__ import annotations

import math

from pipelines.store import jobs
from playground import jobs_panel

SERIES = {"loss": "train loss", "eval_loss": "eval loss"}


def test_the_plot_gets_none_until_the_first_metric_then_every_series(data_dir):
    job = jobs.submit("finetune", "plotted", {"data": "x", "out": "plotted"})
    # an empty first frame would leave gradio's LinePlot blank for good: no metric yet -> None
    assert jobs_panel.metrics_frame(job.id, SERIES) is None
    ctx = jobs.JobContext(job_id=job.id, spec={}, directory=jobs.job_dir(job.id))
    ctx.metric({"step": 0, "eval_loss": 0.78})
    frame = jobs_panel.metrics_frame(job.id, SERIES)
    # the train loss is not logged yet but present (one empty point): the plot draws only the
    # series of its first frame, so a series that appeared later would never get a line
    assert frame is not None and set(frame["series"]) == {"eval loss", "train loss"}
    assert math.isnan(frame[frame["series"] == "train loss"]["value"].iloc[0])
    ctx.metric({"step": 1, "loss": 0.73, "learning_rate": 3e-4})
    frame = jobs_panel.metrics_frame(job.id, SERIES)
    assert list(frame["series"]) == ["eval loss", "train loss"] and not frame["value"].isna().any()
    assert str(frame["value"].dtype) == "float64" and str(frame["step"].dtype) == "int64"  # read as numbers
    status, _, plot, _, _ = jobs_panel.render(None, SERIES)
    assert status == "No job selected yet." and plot["visible"] is False  # no empty frame
    _, _, plot, _, _ = jobs_panel.render(job.id, SERIES)
    assert plot["visible"] is True and list(plot["value"]["series"]) == ["eval loss", "train loss"]


def test_a_panel_for_several_kinds_shows_each_jobs_own_series(data_dir):
    series = {"loss": "loss", "rewards/margins": "margin (DPO)", "kl": "KL (RLOO)"}
    kinds = {"dpo": ("loss", "rewards/margins"), "rloo": ("loss", "kl")}
    job = jobs.submit("rloo", "rl", {"out": "rl"})
    jobs.JobContext(job_id=job.id, spec={}, directory=jobs.job_dir(job.id)).metric({"step": 1, "loss": 0.5})
    frame = jobs_panel.metrics_frame(job.id, series, kinds)
    assert set(frame["series"]) == {"loss", "KL (RLOO)"}


def test_what_a_job_makes_appears_where_it_is_used_when_it_succeeds(use_tiny, data_dir):
    """Issue 42, W3: after a classifier or reward model job succeeded, its table and picker stayed empty (and
    Classify said "train one above first") until Refresh or a reload. Each training tab's panel poll now
    refreshes them once, on the tick that sees the job succeed."""
    import json

    import app as app_module

    demo = app_module.build_app(use_tiny.name)
    pickers = {"cls-pick": ("classify", "classifiers"), "reward-pick": ("reward", "reward_models")}
    for elem_id, (kind, folder) in pickers.items():
        ticks = [
            fn
            for fn in demo.fns.values()
            if any(event == "tick" for _, event in fn.targets)
            and any(getattr(block, "elem_id", None) == elem_id for block in fn.outputs)
        ]
        assert len(ticks) == 1, f"no poll refreshes #{elem_id}"
        [tick] = ticks
        job = jobs.submit(kind, f"new-{kind}", {"out": f"new-{kind}"})
        picker = [i for i, block in enumerate(tick.outputs) if getattr(block, "elem_id", None) == elem_id][0]
        running = tick.fn(job.id, None)
        assert running[0] == jobs.QUEUED and all(update is not None for update in running)
        made = data_dir / folder / f"new-{kind}"  # what the job writes on success
        made.mkdir(parents=True)
        (made / "meta.json").write_text(json.dumps({"name": f"new-{kind}", "created": "2026-12-06T10:00:00"}))
        from sqlalchemy import update

        from pipelines.store.db import session
        from pipelines.store.tables import JobRow

        with session() as s:  # what the worker writes when the job ends well
            s.execute(update(JobRow).where(JobRow.id == job.id).values(status=jobs.SUCCEEDED))
        refreshed = tick.fn(job.id, running[0])
        assert refreshed[0] == jobs.SUCCEEDED and refreshed[picker]["value"] == f"new-{kind}"
        again = tick.fn(job.id, refreshed[0])  # once: later ticks leave the picker to the person
        assert again[picker] == {"__type__": "update"}


def test_ended_jobs_can_be_removed_from_the_picker(data_dir):
    """Issue 42: the job picker filled with cancelled jobs and could not be cleared."""
    kept = jobs.submit("reward", "kept", {"out": "kept"})
    gone = [jobs.submit("reward", f"gone{i}", {"out": f"gone{i}"}) for i in range(3)]
    for job in gone:
        jobs.request_cancel(job.id)
    other = jobs.submit("classify", "other", {"out": "other"})
    jobs.request_cancel(other.id)
    note, picker = jobs_panel.forget_ended(("reward",), kept.id)
    assert note == "Removed 3 cancelled, failed or interrupted jobs."
    assert [value for _, value in picker["choices"]] == [kept.id] and picker["value"] == kept.id
    assert not any(jobs.job_dir(job.id).exists() for job in gone)
    assert jobs.get(other.id).status == jobs.CANCELLED  # another panel's kinds are left alone
