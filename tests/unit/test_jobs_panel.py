"""The jobs panel every training tab shares: what its live plot is sent."""

from __future__ import annotations

import math

from pipelines import jobs
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
    assert status == "No job selected yet." and plot is None


def test_a_panel_for_several_kinds_shows_each_jobs_own_series(data_dir):
    series = {"loss": "loss", "rewards/margins": "margin (DPO)", "kl": "KL (RLOO)"}
    kinds = {"dpo": ("loss", "rewards/margins"), "rloo": ("loss", "kl")}
    job = jobs.submit("rloo", "rl", {"out": "rl"})
    jobs.JobContext(job_id=job.id, spec={}, directory=jobs.job_dir(job.id)).metric({"step": 1, "loss": 0.5})
    frame = jobs_panel.metrics_frame(job.id, series, kinds)
    assert set(frame["series"]) == {"loss", "KL (RLOO)"}
