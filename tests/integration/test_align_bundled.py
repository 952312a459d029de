"""DPO on the bundled model: a few real steps raise the implicit reward margin on held-out pairs."""

from __future__ import annotations

import pytest

from pipelines.store import jobs
from pipelines.train.align import dpo
from tests.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.heavy]  # a real training run (~25 s): `make test-heavy`


def test_dpo_raises_the_held_out_margin(bundled_dir, data_dir, monkeypatch):
    from pipelines import config

    monkeypatch.setenv("PLAYGROUND_MODEL", str(bundled_dir))  # the converted model, by path (no copy)
    config.reset_settings()
    spec = dpo.DPOSpec(
        out="dpo-check",
        data=str(ROOT / "assets" / "datasets" / "preference_pairs.jsonl"),
        max_steps=3,
        batch_size=4,
        max_length=256,
        learning_rate=2e-4,
        eval_fraction=0.1,
    )  # 12 held-out pairs: eval runs twice
    job = jobs.run_foreground("dpo", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    assert job.result["eval_margin_before"] == pytest.approx(0, abs=1e-3)
    assert job.result["eval_margin_after"] > 0.05, job.result  # on pairs whose prompts it never saw
