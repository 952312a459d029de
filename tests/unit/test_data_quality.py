"""Data-quality filters (issue 38): Gopher's heuristics, exact and MinHash near-duplicates, and a
perplexity filter, on the bundled raw sample."""

from __future__ import annotations

import pytest

from pipelines import inside
from pipelines.errors import InvalidParameter
from pipelines.inside import data_quality as dq


def _verdicts(report):
    return {row["index"]: row["dropped"] for row in report["documents"]}


def test_the_sample_keeps_the_prose_and_says_why_it_drops_the_rest():
    report = dq.filter_documents(dq.sample_text(), dq.QualitySpec(max_perplexity=0))
    verdicts = _verdicts(report)
    assert [i for i, reasons in verdicts.items() if not reasons] == [1, 3, 6, 10]  # the four prose paragraphs
    assert verdicts[5] == ["exact duplicate of document 1"]
    assert verdicts[8] == ["near duplicate of document 3"]  # two words changed
    assert "fewer than 2 stop words" in verdicts[2]  # a navigation menu
    assert "too many symbols" in verdicts[7] and "mostly bullet lines" in verdicts[11]
    assert verdicts[12] == ["mean word length outside 3-10"]  # stop words repeated: word salad
    assert all(row["perplexity"] is None for row in report["documents"]), "not scored when switched off"
    assert report["kept"] == 4 and report["dropped"] == 8


def test_a_stricter_near_duplicate_threshold_keeps_the_near_copy():
    report = dq.filter_documents(dq.sample_text(), dq.QualitySpec(max_perplexity=0, near_duplicate=0.95))
    assert _verdicts(report)[8] == []


def test_perplexity_comes_from_the_model_and_drops_above_the_threshold(tiny_handle):
    text = "The cat sat on the mat and looked at the door.\n\nxq7 zzv ##@@ 88h& kkr!! pfft"
    report = dq.filter_documents(
        text, dq.QualitySpec(min_words=1, min_stop_words=0, max_perplexity=1.0), handle=tiny_handle
    )
    first = report["documents"][0]
    assert first["perplexity"] == pytest.approx(inside.perplexity(tiny_handle, first["text"])["perplexity"])
    assert any(reason.startswith("perplexity") for reason in first["dropped"])  # everything is above 1
    # a document longer than the model's views take is scored over its first window, not refused
    long = " ".join(["The river runs to the sea and the farmers work the land."] * 60)
    scored = dq.filter_documents(long, handle=tiny_handle)["documents"][0]["perplexity"]
    assert scored == pytest.approx(inside.perplexity(tiny_handle, long, truncate=True)["perplexity"])
    with pytest.raises(InvalidParameter, match="tokens; these views take at most"):
        inside.perplexity(tiny_handle, long)  # the Likelihood view still refuses it


def test_bad_input_is_refused_with_the_reason():
    for text, why in (
        ("  ", "is empty"),
        ("x\n\n" * (dq.MAX_DOCUMENTS + 1), "documents; at most"),
        ("a" * (dq.MAX_CHARS + 1), "characters"),
    ):
        with pytest.raises(InvalidParameter, match=why):
            dq.split_documents(text)
