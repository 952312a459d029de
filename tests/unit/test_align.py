"""DPO and RLOO jobs on the tiny model: short real runs through the job runner, and the evaluation."""

from __future__ import annotations

import json

import pytest

from pipelines.engine import adapters, models
from pipelines.engine.chat import Message
from pipelines.engine.sampling import InvalidParameter, SamplingParams
from pipelines.store import jobs
from pipelines.train import reward
from pipelines.train.align import common, dpo, evaluate, rloo
from tests.helpers import ROOT

PAIRS = ROOT / "assets" / "datasets" / "preference_pairs.jsonl"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"out": "a", "data": "x", "beta": 0}, "beta"),
        ({"out": "a", "data": "x", "loss_type": "magic"}, "loss_type"),
        ({"out": "a"}, "data"),
        ({"out": "../x", "data": "x"}, "out"),
        ({"out": "a", "data": "x", "learning_rate": 2}, "learning_rate"),
    ],
)
def test_dpo_spec_validation(kwargs, param):
    with pytest.raises(InvalidParameter) as caught:
        dpo.DPOSpec(**kwargs)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"num_generations": 1}, "num_generations"),
        ({"beta": -1}, "beta"),
        ({"temperature": 0}, "temperature"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_rloo_spec_validation(kwargs, param):
    with pytest.raises(InvalidParameter) as caught:
        rloo.RLOOSpec(out="a", reward_model="rm", **kwargs)
    assert caught.value.param == param


def test_prompts_from_file_and_store(tmp_path, data_dir):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps({"prompt": "Hi"}) + "\n" + json.dumps({"prompt": [{"role": "user", "content": "Yo"}]}) + "\n{bad\n"
    )
    assert [p[-1].content for p in common.load_prompts(str(path))] == ["Hi", "Yo"]
    with pytest.raises(InvalidParameter, match="no usable prompts"):
        common.load_prompts(None)  # the store is empty


@pytest.mark.slow
def test_dpo_job_trains_an_adapter_usable_everywhere(tiny_model_env, data_dir):
    spec = dpo.DPOSpec(out="tiny-dpo", data=str(PAIRS), max_steps=2, batch_size=4, max_length=128, beta=0.2)
    job = jobs.run_foreground("dpo", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    assert job.result["steps"] == 2 and job.result["adapter_dir"].endswith("tiny-dpo")
    assert job.result["eval_margin_before"] == pytest.approx(0, abs=1e-4)  # the adapter starts as the identity
    info = adapters.read(adapters.adapter_path("tiny-dpo"))
    assert info.meta["kind"] == "dpo" and info.meta["data"]["split"] == "by prompt"
    records = jobs.read_metrics(job.id)
    assert any("rewards/margins" in r for r in records) and any("loss" in r for r in records)


@pytest.mark.slow
def test_rloo_job_and_evaluation(tiny_model_env, data_dir, tmp_path):
    rm = reward.RewardSpec(out="tiny-rm", data=str(PAIRS), max_steps=1, batch_size=4, max_length=128)
    assert jobs.run_foreground("reward", rm.out, rm.to_dict(), echo=False).status == jobs.SUCCEEDED
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"Say something about {w}."}) + "\n" for w in ("cats", "rain", "tea", "maps"))
    )
    spec = rloo.RLOOSpec(
        out="tiny-rloo",
        reward_model="tiny-rm",
        prompts=str(prompts),
        max_steps=2,
        num_generations=2,
        prompts_per_step=2,
        max_completion_length=8,
    )
    job = jobs.run_foreground("rloo", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    result = job.result
    assert (
        result["steps"] == 2
        and isinstance(result["mean_reward_start"], float)
        and isinstance(result["mean_reward_end"], float)
    )
    assert result["measured_on"] == 4 * rloo.MEASURE_SAMPLES and isinstance(result["greedy_mean_reward_end"], float)
    assert adapters.read(adapters.adapter_path("tiny-rloo")).meta["kind"] == "rloo"
    records = jobs.read_metrics(job.id)
    assert any("reward" in r for r in records) and any("kl" in r for r in records)

    handle = models.load_handle(str(tiny_model_env))
    report = evaluate.evaluate(
        handle,
        "tiny-rloo",
        "tiny-rm",
        [[Message("user", "Hi")], [Message("user", "Tell me a fact.")]],
        SamplingParams(temperature=0, max_new_tokens=6),
    )
    assert report["n"] == 2 and 0 <= report["win_rate"] <= 1 and len(report["rows"]) == 2
    assert set(report) >= {"win_rate", "mean_reward_adapter", "mean_reward_base"}
    sampled = evaluate.evaluate(
        handle,
        "tiny-rloo",
        "tiny-rm",
        [[Message("user", "Hi")], [Message("user", "Tell me a fact.")]],
        SamplingParams(temperature=1.0, max_new_tokens=6, seed=3),
        samples=3,
    )
    assert sampled["n"] == 6 and sampled["samples"] == 3
    draws = [row["base"] for row in sampled["rows"][::2]]  # the first prompt's three seeded draws
    assert len(set(draws)) > 1, "every draw used the same seed"

    with pytest.raises(InvalidParameter, match="no reward model"):
        rloo.check(rloo.RLOOSpec(out="x", reward_model="missing", prompts=str(prompts)))
    with pytest.raises(InvalidParameter, match="already exists"):
        rloo.check(rloo.RLOOSpec(out="tiny-rloo", reward_model="tiny-rm", prompts=str(prompts)))


def test_identical_answers_and_reward_noise_are_ties():
    assert evaluate.outcome(("Paris.", -1.17284954), ("Paris.", -1.17284966)) == "tie"  # the same text
    assert evaluate.outcome(("Paris.", -1.172849), ("Paris!", -1.172851)) == "tie"  # below the tolerance
    assert evaluate.outcome(("Paris.", -1.2), ("It is Paris.", -1.1)) == "win"
    assert evaluate.outcome(("Paris.", -1.1), ("It is Paris.", -1.2)) == "loss"
    assert evaluate.outcome(("a", 0.0), ("b", 0.004), tolerance=0.001) == "win"


def test_an_adapter_that_changes_nothing_wins_half(fresh_tiny_handle, tiny_model_env, data_dir):
    """A LoRA whose B is zero answers exactly as the base model: 50%, whatever the batch numerics do to the scores."""
    from peft import LoraConfig, get_peft_model

    from tests.helpers import build_tiny_model

    noop = get_peft_model(
        build_tiny_model(fresh_tiny_handle.tokenizer), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    noop.save_pretrained(data_dir / "adapters" / "noop")
    rm = reward.RewardSpec(out="judge", data=str(PAIRS), max_steps=1, batch_size=4, max_length=96)
    assert jobs.run_foreground("reward", rm.out, rm.to_dict(), echo=False).status == jobs.SUCCEEDED
    prompts = [[Message("user", p)] for p in ("Hi", "Tell me a fact.", "Name a colour.", "Count to three.")]
    report = evaluate.evaluate(
        fresh_tiny_handle, "noop", "judge", prompts, SamplingParams(temperature=0, max_new_tokens=6)
    )
    assert all(row["base"] == row["adapter"] for row in report["rows"])
    assert report["win_rate"] == 0.5 and report["ties"] == 4 and report["wins"] == report["losses"] == 0
    assert report["tie_tolerance"] == evaluate.TIE_TOLERANCE
