"""In-context-learning presets."""

from __future__ import annotations

import pytest

from pipelines.engine import prompts
from pipelines.engine.sampling import SamplingParams


def test_every_task_renders_three_ways_with_growing_examples():
    tasks = prompts.load_tasks()
    names = {t.name for t in tasks}
    for required in ("Sentiment", "Paraphrase", "Question answering", "Translation", "Summarisation", "Arithmetic"):
        assert any(required in n for n in names), required
    for task in tasks:
        zero, one, few = (task.render(s) for s in ("zero-shot", "one-shot", "few-shot"))
        assert zero.startswith(task.instruction) and zero.endswith(f"{task.output_label}:")
        assert zero.count(f"{task.output_label}:") == 1
        assert one.count(f"{task.output_label}:") == 2
        assert few.count(f"{task.output_label}:") == 4
        assert task.examples[0][1] in one
        SamplingParams(**task.settings)  # suggested settings are valid


def test_dropdown_labels_round_trip():
    labels = prompts.preset_names()
    assert len(labels) == 3 * len(prompts.load_tasks())
    text, settings = prompts.render_preset("Arithmetic · few-shot")
    assert "12 + 7" in text and settings["temperature"] == 0
    with pytest.raises(ValueError):
        prompts.render_preset("Nope · zero-shot")
    with pytest.raises(ValueError):
        prompts.load_tasks()[0].render("two-shot")
