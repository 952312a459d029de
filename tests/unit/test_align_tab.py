"""Align sub-tab handlers as plain Python: starting jobs, evaluation, queueing items for human votes."""

from __future__ import annotations

import json

import gradio as gr
import pytest

from pipelines import jobs, preferences, reward
from playground import align as tab
from tests.conftest import ROOT

PAIRS = str(ROOT / "assets" / "datasets" / "preference_pairs.jsonl")


class _Progress:
    def __call__(self, *args, **kwargs):
        pass


def test_starting_jobs_checks_inputs_first(data_dir, monkeypatch):
    monkeypatch.setattr(
        jobs, "manager", lambda: type("M", (), {"poll_once": lambda self: None})()
    )  # queue only, no worker
    update = tab.start_job(
        tab.METHODS[0],
        "my-dpo",
        tab.PAIR_SOURCES[1],
        None,
        0.1,
        "sigmoid",
        1,
        tab.PROMPT_SOURCES[1],
        None,
        None,
        0.05,
        4,
        0,
        1e-4,
        False,
    )
    job = jobs.get(update["value"])
    assert job.kind == "dpo" and job.spec["data"].endswith("preference_pairs.jsonl") and job.status == jobs.QUEUED
    with pytest.raises(gr.Error, match="at least 2"):
        tab.start_job(
            tab.METHODS[0],
            "x",
            tab.PAIR_SOURCES[0],
            None,
            0.1,
            "sigmoid",
            1,
            tab.PROMPT_SOURCES[1],
            None,
            None,
            0.05,
            4,
            0,
            1e-4,
            False,
        )  # no labels in the store yet
    with pytest.raises(gr.Error, match="beta"):
        tab.start_job(
            tab.METHODS[0],
            "x",
            tab.PAIR_SOURCES[1],
            None,
            0,
            "sigmoid",
            1,
            tab.PROMPT_SOURCES[1],
            None,
            None,
            0.05,
            4,
            0,
            1e-4,
            False,
        )
    with pytest.raises(gr.Error, match="Choose a reward model"):
        tab.start_job(
            tab.METHODS[1],
            "x",
            tab.PAIR_SOURCES[1],
            None,
            0.1,
            "sigmoid",
            1,
            tab.PROMPT_SOURCES[1],
            None,
            None,
            0.05,
            4,
            0,
            1e-4,
            False,
        )
    with pytest.raises(gr.Error, match="no reward model"):
        tab.start_job(
            tab.METHODS[1],
            "x",
            tab.PAIR_SOURCES[1],
            None,
            0.1,
            "sigmoid",
            1,
            tab.PROMPT_SOURCES[1],
            None,
            "ghost",
            0.05,
            4,
            0,
            1e-4,
            False,
        )
    with pytest.raises(gr.Error, match="prompt file"):
        tab.start_job(
            tab.METHODS[1],
            "x",
            tab.PAIR_SOURCES[1],
            None,
            0.1,
            "sigmoid",
            1,
            tab.PROMPT_SOURCES[2],
            None,
            "ghost",
            0.05,
            4,
            0,
            1e-4,
            False,
        )


def test_evaluate_and_queue_for_humans(fresh_tiny_handle, tiny_model_env, data_dir, tmp_path):
    from tests.conftest import make_lora_adapter

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
    with pytest.raises(gr.Error, match="Choose an adapter and a reward model"):
        tab.run_evaluation(None, "rm", tab.PROMPT_SOURCES[1], None, 2, 8, progress=_Progress())
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"question": "no prompt column"}\n')
    with pytest.raises(gr.Error, match="no usable prompts"):
        tab.run_evaluation("tuned", "rm", tab.PROMPT_SOURCES[2], str(empty), 2, 8, progress=_Progress())
