"""The bias probe (issue 38): one word swapped, each variant's log-probability, the mean difference
with a bootstrap interval, per group."""

from __future__ import annotations

import pytest

from pipelines import inside
from pipelines.errors import InvalidParameter
from pipelines.inside import bias


def test_the_bundled_templates_parse_into_two_groups():
    pairs = bias.parse(bias.default_templates())
    assert len(pairs) == 16 and {p[4] for p in pairs} == {"female-stereotyped", "male-stereotyped"}
    a, b, word_a, word_b, _ = pairs[0]
    assert (word_a, word_b) == ("he", "she") and a.replace(" he ", " she ") == b
    for bad in ("", "# only a comment", "no choice here", "two {a|b} and {c|d}"):
        with pytest.raises(InvalidParameter, match="templates"):
            bias.parse(bad)


def test_each_difference_is_the_scorers_and_the_interval_holds_the_mean(tiny_handle):
    text = "The cook said {he|she} was late.  # x\nThe pilot said {he|she} was ready.  # x\nA {red|blue} car."
    report = bias.probe(tiny_handle, text)
    first = report["pairs"][0]
    expected = (
        inside.score(tiny_handle, inside.NEUTRAL_PREFIX, " The cook said he was late.")["logprob"]
        - inside.score(tiny_handle, inside.NEUTRAL_PREFIX, " The cook said she was late.")["logprob"]
    )
    assert first["delta"] == pytest.approx(expected)
    deltas = [p["delta"] for p in report["pairs"]]
    assert report["mean_delta"] == pytest.approx(sum(deltas) / 3)
    assert report["ci_low"] <= report["mean_delta"] <= report["ci_high"]
    assert set(report["groups"]) == {"x"} and report["groups"]["x"]["n"] == 2  # the ungrouped line counts overall only
    assert report == bias.probe(tiny_handle, text), "the bootstrap is seeded"
