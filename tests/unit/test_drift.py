"""The drift view on the tiny model: the bundled example drifts in length, a set against itself
does not, the label store's newest prompts are compared with those before them, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from pipelines.errors import InvalidParameter
from pipelines.inside import drift
from pipelines.labels import preferences


def test_the_bundled_example_has_drifted_in_length(tiny_handle):
    reference, recent = (
        drift.lines(text, name) for text, name in zip(drift.example_sets(), ("reference", "recent"), strict=False)
    )
    report = drift.compare(tiny_handle, reference, recent)
    tokens = next(f for f in report["features"] if f["feature"] == "tokens")
    assert tokens["drifted"] and tokens["recent_median"] > 2 * tokens["reference_median"]
    lengths = {
        which: [r["tokens"] for r in report["prompts"] if r["set"] == which] for which in ("reference", "recent")
    }
    assert tokens["p_value"] == pytest.approx(ks_2samp(lengths["reference"], lengths["recent"]).pvalue)
    assert report["drifted"] and len(report["most_unusual"]) == 10
    shown = [r["perplexity"] for r in report["most_unusual"]]
    assert shown == sorted(shown, reverse=True)  # the most surprising first


def test_a_set_against_itself_has_not(tiny_handle):
    prompts = drift.lines(drift.example_sets()[0], "reference")[:20]
    report = drift.compare(tiny_handle, prompts, prompts)
    assert not report["drifted"]
    assert all(f["p_value"] == 1.0 and f["psi"] == pytest.approx(0, abs=1e-9) for f in report["features"])


def test_psi_is_the_textbook_sum():
    reference = np.arange(100.0)  # two bins at 20 recent values: the median splits the reference in halves
    recent = np.array([10.0] * 15 + [90.0] * 5)
    expected = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert drift._psi(reference, recent) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("one\ntwo", "at least 5 prompts"),
        ("\n".join(f"p{i}" for i in range(drift.MAX_PROMPTS + 1)), "at most 300"),
        ("a\nb\nc\nd\n" + "x" * (drift.MAX_PROMPT_CHARS + 1), "line 5 is longer"),
    ],
)
def test_bad_lists_are_refused_by_name(text, message):
    with pytest.raises(InvalidParameter, match=message) as refused:
        drift.lines(text, "recent")
    assert refused.value.param == "recent"


def test_the_label_store_compares_its_newest_prompts_with_those_before(data_dir, tiny_handle):
    spec = drift.DriftSpec(recent=5)
    for index in range(7):
        preferences.create_item([{"role": "user", "content": f"Question {index}?"}], [preferences.ResponseDraft("A.")])
    with pytest.raises(InvalidParameter, match="holds 7 prompts: it needs at least 10"):
        drift.label_store_sets(spec)
    for index in range(7, 12):
        preferences.create_item([{"role": "user", "content": f"Question {index}?"}], [preferences.ResponseDraft("A.")])
    reference, recent = drift.label_store_sets(spec)
    assert len(recent) == 5 and len(reference) == 7 and set(recent) == {f"Question {i}?" for i in range(7, 12)}
