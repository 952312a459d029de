"""GRPO with verifiable rewards on the tiny model: each preset, the user's reward in the sandbox
(hostile files included), the group-relative advantages, the check that refuses a run that cannot
learn, and the job and command with their JSON contract."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.errors import InvalidParameter
from pipelines.reasoning import grpo, rewards
from pipelines.store import jobs

ANSWERS = [
    "3 + 4 = 7.\nAnswer: 7",
    "The answer is 7, I think.",
    "Seven? No: 8",
    "I cannot tell.",
]


def test_presets_score_as_documented():
    gold = [7.0] * 4
    assert rewards.correctness(ANSWERS, gold) == [1.0, 1.0, 0.0, 0.0]
    assert rewards.format_(ANSWERS) == [1.0, 0.5, 0.0, 0.0]
    assert rewards.number(ANSWERS) == pytest.approx([0.4, 0.1, 0.1, 0.0])
    assert rewards.number(["1 2 3 4 5 6 7 8 9 10 11 12"]) == [1.0]
    assert rewards.length(["word " * 80, "word " * 120, "word " * 400]) == [0.0, -0.5, -1.0]
    conversational = [[{"role": "assistant", "content": "Answer: 7"}]]
    assert rewards.correctness(conversational, [7.0]) == [1.0] and rewards.format_(conversational) == [1.0]


@pytest.mark.parametrize(
    "items, has_file, message",
    [
        (["nonsense"], False, "unknown reward 'nonsense'"),
        (["correctness", "correctness:2"], False, "chosen twice"),
        (["format:0"], False, "non-zero"),
        (["format:x"], False, "must be a number"),
        (["file"], False, "needs a reward file"),
        ([], False, "at least one"),
    ],
)
def test_reward_choices_are_refused_by_name(items, has_file, message):
    with pytest.raises(InvalidParameter, match=message) as caught:
        rewards.parse(items, has_file=has_file)
    assert caught.value.param == "rewards"


def test_weights_and_the_file_reward():
    assert rewards.parse(["correctness", "format:0.5"], has_file=False) == [("correctness", 1.0), ("format", 0.5)]
    assert rewards.parse(["correctness"], has_file=True) == [("correctness", 1.0), ("file", 1.0)]
    assert rewards.parse(["file:-2"], has_file=True) == [("file", -2.0)]


def test_advantages_are_relative_to_the_group():
    found = grpo.advantages([1.0, 0.0, 0.0, 1.0])
    std = math.sqrt(1 / 3)  # Bessel's correction, as torch.std
    assert found == pytest.approx([0.5 / (std + 1e-4), -0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.5 / (std + 1e-4)])
    assert grpo.advantages([0.5, 0.5, 0.5]) == [0.0, 0.0, 0.0]  # a constant group teaches nothing
    weights = [("correctness", 1.0), ("format", 0.5)]
    scores = {"correctness": [1.0, 0.0, 0.0, None], "format": [1.0, 0.5, 0.0, 0.0]}
    (group,) = grpo.groups(weights, 4, ["q"] * 4, ANSWERS, scores)
    assert group["total"] == [1.5, 0.25, 0.0, 0.0]  # None is left out of the sum, as trl's nansum
    assert sum(group["advantages"]) == pytest.approx(0, abs=1e-9)


GOOD = "def reward(prompt, completion, answer):\n    return len(completion) / 10 + (answer == 7)\n"


def test_the_user_reward_runs_in_the_sandbox_row_by_row():
    reward = rewards.SandboxedReward(rewards.check_source(GOOD))
    assert reward.__name__ == "file"
    assert reward(["q", "q"], ["abc", "abcdefghij"], [7.0, 3.0]) == pytest.approx([1.3, 1.0])
    picky = rewards.SandboxedReward("def reward(p, c, a):\n    return 1 / (len(c) - 3)\n")
    assert picky(["q"] * 3, ["abc", "abcd", "ab"], [1.0] * 3) == [None, 1.0, -1.0]  # only the failing row


@pytest.mark.parametrize(
    "source, error",
    [
        ("def reward(p, c, a):\n    while True:\n        pass\n", "time"),
        ("import os\ndef reward(p, c, a):\n    return float(len(open('/etc/shadow').read()))\n", None),
        ("import socket\ndef reward(p, c, a):\n    socket.create_connection(('1.1.1.1', 80))\n    return 1.0\n", None),
        ("def reward(p, c, a):\n    return 'high'\n", None),
        ("import sys\nsys.exit(3)\ndef reward(p, c, a):\n    return 1.0\n", None),
        ("def reward(p, c, a):\n    return [1] * 10**9\n", None),
    ],
)
def test_a_hostile_or_broken_reward_fails_only_its_call(source, error):
    reward = rewards.SandboxedReward(rewards.check_source(source), rewards.sandbox.SandboxLimits(timeout_seconds=2.0))
    assert reward(["q", "q"], ["a", "b"], [1.0, 2.0]) == [None, None]
    if error:
        assert error in (reward.last_error or "")


@pytest.mark.parametrize(
    "source, message",
    [
        ("", "is empty"),
        ("def reward(:\n", "not valid Python"),
        ("def score(p, c, a):\n    return 1\n", "must define a function reward"),
        ("x = 1\n" * 5000, "the limit is"),
    ],
)
def test_reward_files_are_checked_before_anything_runs(source, message):
    with pytest.raises(InvalidParameter, match=message):
        rewards.check_source(source)


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"num_generations": 1}, "num_generations"),
        ({"epsilon": 0}, "epsilon"),
        ({"temperature": 0}, "temperature"),
        ({"reward": ["pal"]}, "reward"),  # a program reward needs program answers
        ({"reward": ["bogus"]}, "rewards"),
        ({"held_out": 0}, "held_out"),
    ],
)
def test_spec_refusals(kwargs, param):
    with pytest.raises(InvalidParameter) as caught:
        grpo.GRPOSpec(out="g", **kwargs)
    assert caught.value.param == param


def _problems(tmp_path, count: int = 8):
    path = tmp_path / "problems.jsonl"
    path.write_text(
        "".join(json.dumps({"question": f"What is {i} + 2?", "answer": i + 2}) + "\n" for i in range(count))
    )
    return path


def _reward_file(tmp_path, body: str) -> str:
    path = tmp_path / "reward.py"
    path.write_text(body)
    return str(path)


def test_problems_split_and_bad_files(tmp_path):
    spec = grpo.GRPOSpec(out="g", prompts=str(_problems(tmp_path)), held_out=3)
    train, held = grpo.problems(spec)
    assert len(train) == 5 and len(held) == 3 and not {r["question"] for r in train} & {r["question"] for r in held}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "answer": "lots"}\n')
    with pytest.raises(InvalidParameter, match="'answer' must be a number"):
        grpo.problems(grpo.GRPOSpec(out="g", prompts=str(bad)))
    default, _ = grpo.problems(grpo.GRPOSpec(out="g"))
    assert len(default) == 200  # the bundled one-step problems, 40 held out


def test_the_check_refuses_rewards_that_cannot_teach(tiny_handle, tmp_path):
    spec = grpo.GRPOSpec(
        out="g",
        prompts=str(_problems(tmp_path)),
        reward=["file"],
        reward_file=_reward_file(tmp_path, "def reward(p, c, a):\n    return 1.0\n"),
        num_generations=2,
        max_completion_length=8,
    )
    train, _, source = grpo.check(spec)
    with pytest.raises(InvalidParameter, match=r"file = \[1.0\].*every advantage would be 0"):
        grpo.preflight(tiny_handle.model, tiny_handle.tokenizer, spec, train, source)
    varied = grpo.GRPOSpec(**{**spec.to_dict(), "reward_file": _reward_file(tmp_path, GOOD)})
    found = grpo.preflight(tiny_handle.model, tiny_handle.tokenizer, varied, train, rewards.check_source(GOOD))
    assert len(found["groups"]) == grpo.CHECK_PROMPTS and len(found["groups"][0]["completions"]) == 2


@pytest.fixture
def trained(tiny_model_env, data_dir, tmp_path):
    spec = grpo.GRPOSpec(
        out="tiny-grpo",
        prompts=str(_problems(tmp_path)),
        reward=["correctness", "file:0.5"],
        reward_file=_reward_file(tmp_path, GOOD),
        num_generations=2,
        prompts_per_step=2,
        max_completion_length=8,
        max_steps=2,
        held_out=2,
    )
    job = jobs.run_foreground("grpo", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    return job


@pytest.mark.slow
def test_the_job_trains_and_records_each_group(trained):
    from pipelines.engine import adapters

    result = trained.result
    assert result["steps"] == 2 and result["adapter_dir"].endswith("tiny-grpo")
    assert set(result["rewards"]) == {"correctness", "file"} and all(len(v) == 2 for v in result["rewards"].values())
    assert 0 <= result["heldout_accuracy_before"] <= 1 and result["heldout_problems"] == 2
    assert len(result["kl"]) == 2
    batches = grpo.read_groups(jobs.job_dir(trained.id))
    assert [b["step"] for b in batches] == [1, 2]
    for group in batches[0]["groups"]:
        totals = [c + 0.5 * f for c, f in zip(group["rewards"]["correctness"], group["rewards"]["file"], strict=True)]
        assert group["total"] == pytest.approx(totals)
        assert group["advantages"] == pytest.approx(grpo.advantages(totals))
    meta = adapters.read(adapters.adapter_path("tiny-grpo")).meta
    assert meta["kind"] == "grpo" and meta["rewards"] == [
        {"name": "correctness", "weight": 1.0},
        {"name": "file", "weight": 0.5},
    ]


def test_history_reads_trls_records():
    records = [
        {"step": 1, "rewards/correctness/mean": 0.0, "rewards/correctness/std": 0.0, "kl": 0.0},
        {
            "step": 2,
            "rewards/correctness/mean": 0.5,
            "rewards/correctness/std": 0.5,
            "kl": 0.01,
            "completions/mean_length": 9.0,
        },
        {"step": 2, "train_runtime": 3.0},
    ]
    found = grpo.history(records)
    assert found["steps"] == [1, 2] and found["rewards"] == {"correctness": [0.0, 0.5]}
    assert found["reward_std"] == {"correctness": [0.0, 0.5]} and found["kl"] == [0.0, 0.01]
    assert found["completion_length"] == [9.0] and grpo.history([])["rewards"] == {}


@pytest.mark.slow
def test_the_grpo_command_keeps_its_json_contract(tiny_model_env, data_dir, tmp_path, capsys):
    from pipelines.cli import main

    flags = ["--prompts", str(_problems(tmp_path)), "--reward-file", _reward_file(tmp_path, GOOD)]
    small = ["--num-generations", "2", "--max-completion-length", "8", "--held-out", "2", "--max-steps", "1"]
    assert main(["align", "grpo", "--out", "cli-grpo", "--reward", "correctness:1", *flags, *small, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"adapter_dir", "steps", "rewards", "heldout_accuracy_before", "heldout_accuracy_after", "kl"} <= set(
        document
    )
    assert set(document["rewards"]) == {"correctness", "file"}
    broken = _reward_file(tmp_path, "def reward(:\n")
    assert main(["align", "grpo", "--out", "x", "--reward-file", broken]) == 2
    assert "not valid Python" in capsys.readouterr().err
    assert main(["align", "grpo", "--out", "x", "--reward", "pal"]) == 2
    assert main(["align", "grpo", "--out", "x", "--num-generations", "1"]) == 2
