"""The metric explainers against hand-computed cases and the project's own metric modules."""

from __future__ import annotations

import pytest

from pipelines.train import evaluation, metric_explain

PAIRS = [
    ("the cat sat on the mat", "the cat lay on a mat"),
    (
        "In short: gradients point uphill. Why it matters: we step the other way.",
        "Gradients point uphill, so we step downhill.",
    ),
    ("A B C D", "x y z"),
]


def test_rouge_l_highlights_the_longest_common_subsequence():
    r = metric_explain.rouge_l("the cat sat on the mat", "the cat lay on a mat")
    assert [r.reference[i] for i in r.matched_reference] == ["the", "cat", "on", "mat"]
    assert [r.candidate[i] for i in r.matched_candidate] == ["the", "cat", "on", "mat"]
    assert r.precision == pytest.approx(4 / 6) and r.recall == pytest.approx(4 / 6)


@pytest.mark.parametrize("reference, candidate", PAIRS)
def test_explained_figures_equal_the_reported_ones(reference, candidate):
    reported = evaluation.text_metrics([candidate], [reference])
    assert metric_explain.rouge_l(reference, candidate).f1 == pytest.approx(reported["rougeL"])
    explained = metric_explain.bleu(reference, candidate)
    assert explained.bleu == pytest.approx(reported["bleu"])
    mean = metric_explain.geometric_mean([p / 100 for p in explained.precisions])
    assert explained.bleu == pytest.approx(100 * explained.brevity_penalty * mean, abs=1e-6)
    for n, grams in enumerate(explained.ngrams):  # the credited n-grams are the matches sacrebleu counted
        assert sum(credited for _, _, credited in grams) == explained.matches[n]


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="candidate: is 20,001 characters"):
        metric_explain.rouge_l("a", "x" * 20_001)
    with pytest.raises(ValueError, match="reference: must be text"):
        metric_explain.bleu(None, "a")  # type: ignore[arg-type]


def test_the_drawn_explanation_shows_the_subsequence_and_the_figures():
    from playground import metric_view
    from tests.refusals import REFUSED

    shown = metric_view.explain_html("the cat sat on the mat", "the cat lay on a mat")
    assert shown.count("<mark class='lcs'>") == 8  # four words, highlighted in both texts
    assert "F1 = 2PR/(P+R) = <b>0.667</b>" in shown
    assert (
        f"BLEU = 100 × BP × mean = <b>{metric_explain.bleu('the cat sat on the mat', 'the cat lay on a mat').bleu:.2f}</b>"
        in shown
    )
    assert "&lt;" in metric_view.explain_html("<i> x", "<i> y")  # BLEU's matched n-grams, escaped
    with pytest.raises(REFUSED, match="Give both"):
        metric_view.explain_html("", "x")
