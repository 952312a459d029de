"""Reward models on the tiny model: training job, by-prompt split, scoring, evaluation."""

from __future__ import annotations

import json

import pytest

from pipelines.engine.chat import Message
from pipelines.engine.sampling import InvalidParameter
from pipelines.labels import preferences
from pipelines.store import db, jobs
from pipelines.train import reward
from tests.helpers import ROOT

SAMPLE = ROOT / "assets" / "datasets" / "preference_pairs.jsonl"


@pytest.fixture(autouse=True)
def fresh_db(data_dir):
    db.dispose_all()
    yield
    db.dispose_all()


def test_split_by_prompt_never_shares_a_prompt():
    rows, _ = reward.load_pairs(reward.RewardSpec(out="x", data=str(SAMPLE)))
    rows = rows + rows[:10]  # repeated prompts must stay on one side
    train, held = reward.split_by_prompt(rows, 0.2, seed=1)
    prompts = lambda rs: {json.dumps(r["prompt"]) for r in rs}  # noqa: E731
    assert not prompts(train) & prompts(held) and len(train) + len(held) == len(rows)
    assert reward.split_by_prompt(rows, 0.2, seed=1) == (train, held)


def test_bundled_pairs_are_clear_cut_and_varied():
    rows, errors = reward.load_pairs(reward.RewardSpec(out="x", data=str(SAMPLE)))
    assert len(rows) >= 100 and not errors
    assert all(r["chosen"][0]["content"] != r["rejected"][0]["content"] for r in rows)
    assert len({r["rejected"][0]["content"] for r in rows}) > 40


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"data": None}, "data"),
        ({"data": "x", "from_store": True}, "data"),
        ({"out": "a/b"}, "out"),
        ({"learning_rate": 0}, "learning_rate"),
    ],
)
def test_spec_validation(kwargs, param):
    with pytest.raises(InvalidParameter) as info:
        reward.RewardSpec(**{"out": "rm", "data": "x.jsonl", **kwargs})
    assert info.value.param == param


def test_too_few_or_bad_pairs_are_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{oops\n')
    with pytest.raises(InvalidParameter, match="line 2"):
        reward.load_pairs(reward.RewardSpec(out="x", data=str(bad)))
    with pytest.raises(InvalidParameter, match="at least 2"):
        reward.load_pairs(reward.RewardSpec(out="x", data=str(bad), skip_bad_rows=True))
    with pytest.raises(InvalidParameter, match="at least 2"):
        reward.load_pairs(reward.RewardSpec(out="x", from_store=True))


@pytest.mark.slow
def test_train_score_and_evaluate_on_the_tiny_model(tiny_model_env, data_dir):
    spec = reward.RewardSpec(out="tiny-rm", data=str(SAMPLE), max_steps=2, batch_size=4, max_length=128)
    job = jobs.run_foreground("reward", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    assert set(job.result) >= {"model_dir", "eval_accuracy", "steps"} and job.result["steps"] == 2
    assert 0 <= job.result["eval_accuracy"] <= 1
    meta = reward.meta("tiny-rm")
    assert meta["data"]["split"] == "by prompt" and meta["data"]["eval_pairs"] > 0
    assert [m["name"] for m in reward.list_models() if not m["bundled"]] == ["tiny-rm"]
    records = jobs.read_metrics(job.id)
    assert any("accuracy" in r for r in records)

    scores = reward.scorer("tiny-rm").score([{"role": "user", "content": "Hi"}], ["Hello!", "Go away.", "Hello!"])
    assert scores[0] == pytest.approx(scores[2]) and scores[0] != scores[1]  # deterministic, discriminates
    assert reward.score("tiny-rm", "Hi", "Hello!") == pytest.approx(scores[0], abs=1e-5)  # batch = single
    result = reward.evaluate_file("tiny-rm", SAMPLE)
    assert result["n"] == 120 and 0 <= result["accuracy"] <= 1

    it = preferences.create_item(
        [Message("user", "Hi")], [preferences.ResponseDraft("Hello!"), preferences.ResponseDraft("Go away.")]
    )
    preferences.submit_label(it.id, "ann", next(r.letter for r in it.responses if r.text == "Hello!"))
    agreement = reward.agreement_with_humans("tiny-rm")
    assert agreement["n"] == 1 and agreement["accuracy"] == float(scores[0] > scores[1])


def test_scoring_tokenises_like_reward_trainer(tokenizer):
    prompt = [{"role": "user", "content": "Hi"}]
    ids = reward.tokenize(tokenizer, prompt, "Hello!")
    expected = tokenizer.apply_chat_template(
        prompt + [{"role": "assistant", "content": "Hello!"}], tokenize=True, return_dict=True
    )["input_ids"]
    assert ids == list(expected)
    assert tokenizer.decode(ids).count("<|im_start|>assistant") == 1  # no second generation prompt


def test_missing_reward_model_is_a_clear_error():
    with pytest.raises(reward.RewardModelError, match="no reward model named"):
        reward.scorer("nope")
