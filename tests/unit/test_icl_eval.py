"""In-context learning measured on the bundled labelled items (tiny model: the bookkeeping, not the skill)."""

from __future__ import annotations

import pytest

from pipelines.engine import prompts
from pipelines.train import icl_eval
from tests.refusals import REFUSED


def test_labelled_items_are_never_the_examples():
    for name in icl_eval.measurable_tasks():
        task = next(t for t in prompts.load_tasks() if t.name == name)
        assert len(task.tests) >= 10 and not {i for i, _ in task.tests} & {i for i, _ in task.examples}
        labels = {label for _, label in task.tests}
        assert len(labels) == 2 and all(sum(y == x for _, y in task.tests) * 2 == len(task.tests) for x in labels)
        one = task.render("one-shot", task.tests[0][0])
        assert one.count(f"{task.output_label}:") == 2 and one.endswith(f"{task.tests[0][0]}\n{task.output_label}:")


def test_measure_counts_each_prompt_style(tiny_handle):
    report = icl_eval.measure(tiny_handle, "Sentiment classification")
    assert set(report.accuracy) == set(prompts.SHOTS) and len(report.items) == 3 * 12
    for shots, accuracy in report.accuracy.items():
        mine = [i for i in report.items if i.shots == shots]
        assert accuracy == sum(i.correct for i in mine) / len(mine)
        assert report.invalid[shots] == sum(i.answer not in {"positive", "negative"} for i in mine)
    with pytest.raises(ValueError, match="no labelled task named 'Translation"):
        icl_eval.measure(tiny_handle, "Translation (English to French)")


def test_the_tab_shows_accuracy_side_by_side(use_tiny):
    from playground import generate as tab

    summary, items = tab.measure_shots("Paraphrase detection")
    assert list(summary["prompt"]) == list(prompts.SHOTS) and len(items) == 36
    with pytest.raises(REFUSED, match="Choose a task"):
        tab.measure_shots(None)


@pytest.mark.parametrize("text, word", [("\n Positive.", "positive"), ("", ""), ("no, because", "no")])
def test_the_first_word_is_the_answer(text, word):
    assert icl_eval.first_word(text) == word


def test_wordings_are_compared_on_the_same_items_zero_shot(tiny_handle):
    task = next(t for t in prompts.load_tasks() if t.name == "Sentiment classification")
    assert len(task.wordings) >= 3 and task.wordings[0] == task.instruction
    report = icl_eval.measure_wordings(tiny_handle, task.name)
    assert len(report.accuracy) == len(task.wordings) and len(report.items) == len(task.wordings) * len(task.tests)
    for style, accuracy in report.accuracy.items():
        mine = [i for i in report.items if i.shots == style]
        assert [i.input for i in mine] == [item for item, _ in task.tests]  # the same items under every wording
        assert accuracy == sum(i.correct for i in mine) / len(mine)
    prompt = task.render("zero-shot", "Great film.", instruction=task.wordings[1])
    assert prompt.startswith(task.wordings[1]) and task.output_label + ":" in prompt and prompt.count(":") >= 2
    with pytest.raises(ValueError, match="no labelled task named"):
        icl_eval.measure_wordings(tiny_handle, "Arithmetic")
