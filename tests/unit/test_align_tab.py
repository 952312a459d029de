"""Align sub-tab handlers as plain Python: starting jobs, evaluation, queueing items for human votes."""

from __future__ import annotations

import json

import pytest

from pipelines.labels import preferences
from pipelines.store import jobs
from pipelines.train import reward
from playground import align as tab
from tests.helpers import ROOT
from tests.refusals import REFUSED

PAIRS = str(ROOT / "assets" / "datasets" / "preference_pairs.jsonl")


class _Progress:
    def __call__(self, *args, **kwargs):
        pass


def _start(method: int, pairs: int = 1, prompts: int = 1, **settings):
    """The Align tab's Start, with the DPO defaults and the bundled sample unless told otherwise."""
    values = {"out": "x", "overwrite": False, "dpo_beta": 0.1, "dpo_loss_type": "sigmoid", "dpo_epochs": 1}
    values |= {"rloo_beta": 0.05, "rloo_num_generations": 4, "rloo_max_steps": 2, "rloo_learning_rate": 1e-4}
    return tab.start_job(
        tab.METHODS[method], tab.PAIR_SOURCES[pairs], None, tab.PROMPT_SOURCES[prompts], None, **values | settings
    )


def test_starting_jobs_checks_inputs_first(data_dir, monkeypatch):
    monkeypatch.setattr(
        jobs, "manager", lambda: type("M", (), {"poll_once": lambda self: None})()
    )  # queue only, no worker
    update = _start(0, out="my-dpo")
    job = jobs.get(update["value"])
    assert job.kind == "dpo" and job.spec["data"].endswith("preference_pairs.jsonl") and job.status == jobs.QUEUED
    assert job.spec["beta"] == 0.1 and job.spec["max_steps"] == -1  # -1: train for the epochs given
    with pytest.raises(REFUSED, match="at least 2"):
        _start(0, pairs=0)  # no labels in the store yet
    with pytest.raises(REFUSED, match=r"β: must be in \(0, 10\], got 0"):
        _start(0, dpo_beta=0)
    with pytest.raises(REFUSED, match="Choose a reward model"):
        _start(1, rloo_reward_model=None)
    with pytest.raises(REFUSED, match="no reward model"):
        _start(1, rloo_reward_model="ghost")
    with pytest.raises(REFUSED, match="prompt file"):
        _start(1, prompts=2, rloo_reward_model="ghost")
    with pytest.raises(REFUSED, match="Samples per prompt"):
        _start(1, rloo_reward_model="ghost", rloo_num_generations=1)


def test_starting_grpo_checks_problems_and_the_reward_file_first(data_dir, monkeypatch, tmp_path):
    from playground import grpo as grpo_tab

    monkeypatch.setattr(jobs, "manager", lambda: type("M", (), {"poll_once": lambda self: None})())
    values = {"problem_source": grpo_tab.PROBLEM_SOURCES[0], "reward": "correctness, format:0.5", "grpo_max_steps": 5}
    update = _start(2, out="my-grpo", **values)
    job = jobs.get(update["value"])
    assert job.kind == "grpo" and job.spec["reward"] == ["correctness", "format:0.5"] and job.spec["prompts"] is None
    assert job.spec["max_steps"] == 5
    harder = jobs.get(_start(2, out="hard", **values | {"problem_source": grpo_tab.PROBLEM_SOURCES[1]})["value"])
    assert harder.spec["prompts"].endswith("problems.jsonl")
    broken = tmp_path / "reward.py"
    broken.write_text("def reward(:\n")
    with pytest.raises(REFUSED, match="not valid Python"):
        _start(2, out="g2", **values | {"reward_file": str(broken)})
    with pytest.raises(REFUSED, match="Choose a problems file"):
        _start(2, out="g2", **values | {"problem_source": grpo_tab.PROBLEM_SOURCES[2]})
    with pytest.raises(REFUSED, match="unknown reward 'typo'"):
        _start(2, out="g2", **values | {"reward": "correctness, typo"})
    with pytest.raises(REFUSED, match="Group size"):
        _start(2, out="g2", **values | {"grpo_num_generations": 1})
    text = tmp_path / "reward.txt"
    text.write_text("def reward(p, c, a):\n    return 1.0\n")
    with pytest.raises(REFUSED, match=r"\.py"):
        _start(2, out="g2", **values | {"reward_file": str(text)})


def test_the_group_view_shows_advantages_and_refuses_without_a_job(data_dir, fresh_tiny_handle):
    from pipelines.reasoning import grpo
    from playground import grpo as grpo_tab

    with pytest.raises(REFUSED, match="Select a GRPO job"):
        grpo_tab.show_group(None, grpo_tab.SELECTED_JOB, 0)
    directory = jobs.job_dir("abc123")
    directory.mkdir(parents=True)
    recorder = grpo.Recorder([("correctness", 1.0)], 2, directory / grpo.GROUPS_FILE)
    recorder.scored("correctness", ["q1", "q1", "q2", "q2"], ["Answer: 7", "no", "8", "9"], [1.0, 0.0, 0.0, 0.0], None)
    note, table, tokens, histogram, curves, lengths = grpo_tab.show_group("abc123", grpo_tab.SELECTED_JOB, 0)
    assert curves.empty and lengths.empty  # this job logged no metrics
    assert list(table["advantage"]) == pytest.approx([0.707, -0.707], abs=1e-3)
    assert tokens[0][1] == "pushed up" and any(value == "pushed down" for _, value in tokens)
    assert histogram["answers"].sum() == 4 and "q1" in note
    *_, curves, lengths = grpo_tab.show_group(None, "grpo-hack", 30)  # a bundled run: its recorded curves
    assert set(curves["series"]) == {"number mean", "number spread (std)"} and len(lengths) == 30
    with pytest.raises(REFUSED, match="no bundled GRPO run named 'nope'"):
        grpo_tab.show_group("abc123", "nope", 0)
    with pytest.raises(REFUSED, match="No step 9 recorded"):
        grpo_tab.show_group("abc123", None, 9)


def test_evaluate_and_queue_for_humans(fresh_tiny_handle, tiny_model_env, data_dir, tmp_path):
    from tests.helpers import make_lora_adapter

    make_lora_adapter(
        fresh_tiny_handle.tokenizer, data_dir / "adapters", "tuned"
    )  # attaching wraps the model: not the shared one
    rm = reward.RewardSpec(out="rm", data=PAIRS, max_steps=1, batch_size=4, max_length=96)
    assert jobs.run_foreground("reward", rm.out, rm.to_dict(), echo=False).status == jobs.SUCCEEDED
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Hi!", "Name a colour.", "Count to three.")))
    summary, table = tab.run_evaluation("tuned", "rm", tab.PROMPT_SOURCES[2], str(prompts), 2, 8, progress=_Progress())
    assert (
        "wins" in summary
        and len(table) == 2
        and list(table.columns)[:2] == ["prompt", "adapter"]
        and set(table["adapter"]) <= {"win", "tie", "loss"}
    )
    message = tab.queue_for_humans("tuned", tab.PROMPT_SOURCES[2], str(prompts), 3, 6, progress=_Progress())
    assert "Queued **3**" in message
    items = preferences.list_items()
    assert len(items) == 3 and all(sorted(r.source for r in i.responses) == ["base", "tuned"] for i in items)
    with pytest.raises(REFUSED, match="Choose an adapter and a reward model"):
        tab.run_evaluation(None, "rm", tab.PROMPT_SOURCES[1], None, 2, 8, progress=_Progress())
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"question": "no prompt column"}\n')
    with pytest.raises(REFUSED, match="no usable prompts"):
        tab.run_evaluation("tuned", "rm", tab.PROMPT_SOURCES[2], str(empty), 2, 8, progress=_Progress())
