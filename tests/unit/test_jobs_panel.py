"""The jobs panel every training tab shares: what its live plot is sent."""

from __future__ import annotations

from pipelines import jobs
from playground import jobs_panel

SERIES = {"loss": "train loss", "eval_loss": "eval loss"}


def test_the_plot_gets_none_until_the_first_metric_then_numbers(data_dir):
    job = jobs.submit("finetune", "plotted", {"data": "x", "out": "plotted"})
    # an empty frame would freeze gradio's LinePlot (axes, never a line): no metric yet -> None
    assert jobs_panel.metrics_frame(job.id, SERIES) is None
    ctx = jobs.JobContext(job_id=job.id, spec={}, directory=jobs.job_dir(job.id))
    ctx.metric({"step": 0, "eval_loss": 0.78})
    ctx.metric({"step": 1, "loss": 0.73, "learning_rate": 3e-4})
    frame = jobs_panel.metrics_frame(job.id, SERIES)
    assert frame is not None and list(frame["series"]) == ["eval loss", "train loss"]
    assert str(frame["value"].dtype) == "float64" and str(frame["step"].dtype) == "int64"  # read as numbers
    status, _, plot, _, _ = jobs_panel.render(None, SERIES)
    assert status == "No job selected yet." and plot is None
