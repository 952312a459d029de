"""FLAN-style templates and the multi-task mix: every template fits every row of its task, the cap
and the phrasings hold, the mix is reproducible and trains like any upload."""

from __future__ import annotations

import pytest

from pipelines.errors import InvalidParameter
from pipelines.train import instruction_mix, sft_data


def test_every_template_fills_from_every_row_of_its_task():
    for task, found in instruction_mix.templates().items():
        assert len(found["templates"]) >= 5, task  # FLAN used ~10 per dataset; here at least 5
        rows = instruction_mix._rows(task)
        for prompt, target in found["templates"]:
            for row in rows:
                assert prompt.format(**row).strip() and target.format(**row).strip()


def test_the_cap_and_the_phrasings():
    spec = instruction_mix.MixSpec(tasks=["sentiment", "paraphrase"], cap=50, templates_per_row=3, seed=4)
    report = instruction_mix.build(spec)
    assert report["counts"] == {"sentiment": 150, "paraphrase": 150}  # 50 rows each (of 120 and 80), 3 phrasings
    sentiment = [r for r in report["rows"] if r["task"] == "sentiment"]
    assert {r["response"] for r in sentiment} == {"positive", "negative"}
    assert len({r["template"] for r in sentiment}) == 6  # every phrasing is used
    assert [r["task"] for r in report["rows"][:20]] != ["sentiment"] * 20  # the tasks are shuffled together
    assert instruction_mix.build(spec) == report  # the seed decides everything
    assert instruction_mix.build(instruction_mix.MixSpec(cap=1000))["counts"] == {
        "sentiment": 120,
        "paraphrase": 80,
        "tutor": 120,
    }  # below the cap, a task gives what it has: proportional to its size


def test_a_mix_trains_like_any_upload(tmp_path):
    written = instruction_mix.write(instruction_mix.MixSpec(cap=10), tmp_path / "mix.jsonl")
    data = sft_data.load_file(written["path"])
    assert data.format == "prompt-response" and data.usable == 30 and not data.problems


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"tasks": []}, "tasks"),
        ({"tasks": ["translation"]}, "tasks"),
        ({"cap": 0}, "cap"),
        ({"templates_per_row": 11}, "templates_per_row"),
    ],
)
def test_bad_settings_are_refused_by_name(values, field):
    with pytest.raises(InvalidParameter) as refused:
        instruction_mix.MixSpec(**values)
    assert refused.value.param == field


def test_the_panel_hands_the_mix_to_the_form():
    from playground import instruction_mix as panel

    summary, preview, path = panel.build_mix(["tutor"], cap=5, templates_per_row=2, seed=0)
    assert "**10 rows** (tutor 10)" in summary and len(preview) == 10 and path.endswith(".jsonl")
    assert sft_data.load_file(path).usable == 10
