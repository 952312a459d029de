"""Every training job under every precision plan this machine can run, whatever its CPU has.

A CPU with native bf16 trains in bf16 autocast; one without trains in fp32. A failure that only one
plan shows (prompt tuning crashed in trl's fused LM head under bf16) must fail here on any host, so
each plan is forced through PLAYGROUND_TRAIN_PRECISION rather than taken from the hardware.
"""

from __future__ import annotations

import json

import pytest

from pipelines.engine import adapters
from pipelines.store import jobs
from pipelines.train import reward
from pipelines.train.align import dpo, rloo
from pipelines.train.finetune import FinetuneSpec
from tests.helpers import ROOT, write_sft_rows

pytestmark = pytest.mark.slow  # trains models or spawns processes: `make test-fast` skips it

PAIRS = ROOT / "assets" / "datasets" / "preference_pairs.jsonl"
PLANS = ("fp32", "bf16")


@pytest.fixture(params=PLANS)
def plan(request, monkeypatch, tiny_model_env):
    from pipelines import config
    from pipelines.train import training

    monkeypatch.setenv("PLAYGROUND_TRAIN_PRECISION", request.param)
    config.reset_settings()
    _, precision = training.device_and_precision()
    assert precision.bf16 == (request.param == "bf16") and not precision.fp16
    return request.param


def _run(kind: str, spec) -> jobs.JobInfo:
    job = jobs.run_foreground(kind, spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    assert "PLAYGROUND_TRAIN_PRECISION" in jobs.tail_log(job.id, 200)  # the plan asked for is the plan used
    return job


@pytest.mark.parametrize("method", ["lora", "prompt-tuning"])
def test_fine_tuning(plan, method, tmp_path, data_dir):
    data = write_sft_rows(tmp_path / "d.jsonl", n=12)
    spec = FinetuneSpec(
        data=str(data),
        out=f"ft-{method}-{plan}",
        method=method,
        max_steps=1,
        batch_size=4,
        max_length=64,
        eval_fraction=0.2,
        eval_samples=1,
        eval_max_new_tokens=4,
    )
    job = _run("finetune", spec)
    assert job.result["steps"] == 1 and job.result["before"]["loss"] > 0 and job.result["after"]["loss"] > 0
    assert adapters.get(spec.out).peft_type == ("LORA" if method == "lora" else "PROMPT_TUNING")


def test_reward_then_dpo_then_rloo(plan, tmp_path, data_dir):
    rm = reward.RewardSpec(out=f"rm-{plan}", data=str(PAIRS), max_steps=1, batch_size=4, max_length=96)
    assert _run("reward", rm).result["steps"] == 1
    spec = dpo.DPOSpec(out=f"dpo-{plan}", data=str(PAIRS), max_steps=1, batch_size=4, max_length=96)
    assert _run("dpo", spec).result["steps"] == 1
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Hi", "Name a colour.")))
    spec = rloo.RLOOSpec(
        out=f"rloo-{plan}",
        reward_model=rm.out,
        prompts=str(prompts),
        max_steps=1,
        num_generations=2,
        prompts_per_step=2,
        max_completion_length=4,
    )
    assert _run("rloo", spec).result["steps"] == 1


def test_impossible_plans_are_refused_with_the_setting_named(monkeypatch):
    from pipelines import config
    from pipelines.engine.hardware import Hardware, train_precision
    from pipelines.engine.sampling import InvalidParameter
    from pipelines.train import training

    assert train_precision(Hardware(cuda=True, cuda_bf16=False), "cuda", "fp16").fp16
    with pytest.raises(ValueError, match="no bf16"):
        train_precision(Hardware(cuda=True, cuda_bf16=False), "cuda", "bf16")
    monkeypatch.setenv("PLAYGROUND_TRAIN_PRECISION", "fp16")
    config.reset_settings()
    with pytest.raises(InvalidParameter, match="needs a GPU") as caught:
        training.device_and_precision()
    assert caught.value.param == "PLAYGROUND_TRAIN_PRECISION"
    monkeypatch.setenv("PLAYGROUND_TRAIN_PRECISION", "int4")
    with pytest.raises(ValueError, match="PLAYGROUND_TRAIN_PRECISION"):
        config.Settings()
