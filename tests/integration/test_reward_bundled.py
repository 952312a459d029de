"""A reward model on the bundled model, trained on the bundled clear-cut pairs."""

from __future__ import annotations

import shutil

import pytest

from pipelines.store import jobs
from pipelines.train import reward
from tests.helpers import MODEL_CACHE, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.heavy]  # a real training run (~25 s): `make test-heavy`


def test_reward_model_generalises_to_unseen_prompts(bundled_dir, data_dir):
    shutil.copytree(MODEL_CACHE / "models", data_dir / "models")
    spec = reward.RewardSpec(
        out="clear-cut",
        data=str(ROOT / "assets" / "datasets" / "preference_pairs.jsonl"),
        max_steps=4,
        batch_size=8,
        max_length=160,
        learning_rate=3e-4,
        eval_fraction=0.2,
    )
    job = jobs.run_foreground("reward", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    meta = reward.meta("clear-cut")
    assert meta["data"]["eval_pairs"] == 24
    assert meta["metrics"]["eval_accuracy_before"] < 0.7  # an untrained head is no better than chance
    assert job.result["eval_accuracy"] >= 0.8  # held-out prompts, never seen in training
