"""A real short fine-tune of the bundled model on the bundled sample data."""

from __future__ import annotations

import pytest

from pipelines.store import jobs
from pipelines.train import finetune
from tests.helpers import MODEL_CACHE, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.heavy]  # a real training run (~25 s): `make test-heavy`


def test_short_finetune_lowers_eval_loss(bundled_dir, monkeypatch, data_dir):
    import shutil

    shutil.copytree(MODEL_CACHE / "models", data_dir / "models")  # reuse the converted model
    spec = finetune.FinetuneSpec(
        data=str(ROOT / "assets" / "datasets" / "concise_tutor.jsonl"),
        out="tutor-short",
        max_steps=4,
        batch_size=8,
        max_length=128,
        learning_rate=1e-3,
        eval_fraction=0.1,
        eval_samples=2,
        eval_max_new_tokens=12,
        target_modules=["q_proj", "v_proj"],
    )
    job = jobs.run_foreground("finetune", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    before, after = job.result["before"], job.result["after"]
    assert after["loss"] < before["loss"] - 0.1
    assert after["general_perplexity"] < before["general_perplexity"] * 1.5  # no catastrophic forgetting
