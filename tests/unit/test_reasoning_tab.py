"""Reasoning tab handlers as plain Python."""

from __future__ import annotations

import json

import pytest

from playground import reasoning as tab
from tests.helpers import SAMPLING_DEFAULTS as DEFAULTS
from tests.refusals import REFUSED

PROMPTS = [tab.reset_prompt(k) for k in tab.KEYS]
SHORT = {**DEFAULTS, "temperature": 0}
PROMPT_KWARGS = {
    f"{key}_prompt": prompt for key, prompt in zip(tab.KEYS, PROMPTS, strict=True)
}  # run_benchmark takes them by name


class _Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, fraction, desc=None):
        self.calls.append((fraction, desc))


def _short(prompt_json: str, budget: int = 4) -> str:
    data = json.loads(prompt_json)
    data["max_new_tokens"] = budget
    return json.dumps(data)


def test_three_columns_stream_and_finish(use_tiny):
    updates = list(
        tab.run_strategies("What is 2 + 2?", 4, list(tab.KEYS), 1, *[_short(p) for p in PROMPTS], None, **SHORT)
    )
    final = updates[-1]
    direct_out, direct_summary, cot_out, cot_summary, pal_out, pal_summary, program, report, raw, capsule = final
    assert "Answer:" in direct_summary and "expected 4" in direct_summary or "right" in direct_summary
    assert isinstance(program, str) and report  # PAL's text went to the sandbox and the report says what happened
    assert [r["strategy"] for r in raw["results"]] == ["direct", "cot", "pal"]


def test_a_sampled_run_with_edited_prompts_replays_from_its_capsule(use_tiny):
    """Issue 43: a run made in the tab — prompts edited for the session, sampled without a seed — keeps its
    capsule; replay makes every strategy's outputs again, and loading it puts the edited prompts back."""
    from pipelines.replay import replay

    edited = [_short(p, budget=6) for p in PROMPTS]
    sampled = {**DEFAULTS, "temperature": 0.9, "seed": -1}
    *_, raw, capsule = list(tab.run_strategies("What is 3 + 4?", None, ["direct", "pal"], 2, *edited, None, **sampled))[
        -1
    ]
    seed = capsule["inputs"]["sampler"]["params"]["seed"]
    assert isinstance(seed, int) and capsule["inputs"]["prompts"]["direct"]["max_new_tokens"] == 6
    answer = replay.replay(capsule)
    assert answer["match"] is True
    assert [r["outputs"] for r in answer["replayed"]["results"]] == [
        [s["output"] for s in r["samples"]] for r in raw["results"]
    ]
    question, keys, samples, *editors_and_settings, note = tab.load_capsule_file(
        tab.capsule_files.saved(capsule, "run")
    )
    assert (question, keys, samples) == ("What is 3 + 4?", ["direct", "pal"], 2)
    assert json.loads(editors_and_settings[0])["max_new_tokens"] == 6 and f"seed {seed}" in note


def test_only_the_ticked_strategies_run(use_tiny):
    final = list(tab.run_strategies("What is 2 + 2?", None, ["cot"], 1, *[_short(p) for p in PROMPTS], None, **SHORT))[
        -1
    ]
    assert final[1] == "<span class='muted'>not run</span>" and "Answer:" in final[3] and final[6] == ""


def test_bad_input_is_a_clear_message(use_tiny):
    with pytest.raises(REFUSED, match="empty"):
        list(tab.run_strategies("  ", None, list(tab.KEYS), 1, *PROMPTS, None, **SHORT))
    with pytest.raises(REFUSED, match="Tick at least one"):
        list(tab.run_strategies("2+2?", None, [], 1, *PROMPTS, None, **SHORT))
    with pytest.raises(REFUSED, match="not valid JSON"):
        list(tab.run_strategies("2+2?", None, ["cot"], 1, PROMPTS[0], "{oops", PROMPTS[2], None, **SHORT))
    with pytest.raises(REFUSED, match="temperature above 0"):
        list(tab.run_strategies("2+2?", None, ["cot"], 3, *PROMPTS, None, **SHORT))


def test_problem_picker_fills_question_and_answer():
    first = tab._label(1, tab.bundled_problems()[0])
    question, gold = tab.pick_problem(first)
    assert question.startswith("Mia has 12 stickers") and gold == "27"
    assert tab.parse_gold(gold) == 27


def test_known_answer_box_blank_means_unknown_and_garbage_is_refused(use_tiny):
    assert tab.parse_gold("") is None and tab.parse_gold("   ") is None and tab.parse_gold(None) is None
    assert tab.parse_gold(" $1,200 ") == 1200 and tab.parse_gold("3/4") == 0.75 and tab.parse_gold(4) == 4.0
    with pytest.raises(REFUSED, match="not a number"):
        tab.parse_gold("seven-ish")
    with pytest.raises(REFUSED, match="not a number"):
        list(tab.run_strategies("2+2?", "abc", ["cot"], 1, *PROMPTS, None, **SHORT))
    # a blank box never marks an answer wrong
    final = list(tab.run_strategies("What is 2 + 2?", "", ["direct"], 1, *[_short(p) for p in PROMPTS], None, **SHORT))[
        -1
    ]
    assert "wrong" not in final[1] and "right" not in final[1]


def test_benchmark_runs_saves_and_reloads(use_tiny, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(
        '{"question": "What is 1 + 1?", "answer": 2}\n{"question": "What is 2 + 2?", "answer": 4}\nnot json\n'
    )
    progress = _Progress()
    updates = list(
        tab.run_benchmark(
            "Upload JSONL",
            str(data),
            10,
            ["direct", "pal"],
            1,
            None,
            progress=progress,
            **{f"{key}_prompt": _short(p, 3) for key, p in zip(tab.KEYS, PROMPTS, strict=True)},
            **SHORT,
        )
    )
    table, items, note, saved = updates[-1]
    assert list(table["strategy"]) == ["direct", "pal"] and list(table["n"]) == [2, 2]
    assert len(items) == 2 and "complete" in note and progress.calls[-1][0] == 1.0
    assert "running: 1 of 2 done" in updates[0][2]
    run_id = saved["value"]
    table2, items2, note2 = tab.load_saved_run(run_id)
    assert table2.equals(table) and len(items2) == 2
    with pytest.raises(REFUSED, match="Upload a JSONL"):
        list(
            tab.run_benchmark(
                "Upload JSONL", None, 10, ["direct"], 1, None, progress=progress, **PROMPT_KWARGS, **SHORT
            )
        )
    empty = tmp_path / "bad.jsonl"
    empty.write_text('{"question": "q", "answer": "lots"}\n')
    with pytest.raises(REFUSED, match="No usable problems: line 1"):
        list(
            tab.run_benchmark(
                "Upload JSONL", str(empty), 10, ["direct"], 1, None, progress=progress, **PROMPT_KWARGS, **SHORT
            )
        )
    with pytest.raises(REFUSED, match="Choose a saved run"):
        tab.load_saved_run(None)
