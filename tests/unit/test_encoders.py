"""Model families (issue 38): BERT's masking recipe as transformers applies it, T5's span corruption,
bidirectional vs causal attention, and ALBERT's sentence-order task."""

from __future__ import annotations

import random

import pytest

from pipelines.errors import InvalidParameter
from pipelines.inside import encoders

TEXT = "Thank you for inviting me to your party last week, it was great fun and we danced until late."


@pytest.fixture(scope="module")
def wordpieces():
    return encoders.encoder()[0]


def test_t5_spans_hide_the_share_asked_in_about_that_many_spans():
    for length in (10, 57, 300):
        mask = encoders.span_noise_mask(length, 0.15, 3.0, random.Random(1))
        assert len(mask) == length and sum(mask) == max(1, round(length * 0.15))
        spans = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
        assert spans == max(1, min(sum(mask), length - sum(mask), round(sum(mask) / 3)))
    assert encoders.span_noise_mask(50, 0.15, 3, random.Random(7)) == encoders.span_noise_mask(
        50, 0.15, 3, random.Random(7)
    )


def test_span_corruption_input_and_target_put_the_text_back_together(wordpieces):
    report = encoders.span_corruption(wordpieces, TEXT, encoders.MaskingSpec(probability=0.3, seed=3))
    target, rebuilt = iter(report["target"]), []
    spans: dict[str, list[str]] = {}
    current = None
    for piece in target:
        if piece.startswith("<extra_id_"):
            current = spans.setdefault(piece, [])
        else:
            current.append(piece)
    for piece in report["input"]:
        rebuilt += spans[piece] if piece.startswith("<extra_id_") else [piece]
    assert rebuilt == wordpieces.tokenize(TEXT)
    assert report["target"][-1] == f"<extra_id_{report['spans']}>" and report["corrupted"] == sum(
        t["corrupted"] for t in report["tokens"]
    )
    with pytest.raises(InvalidParameter, match="two tokens"):
        encoders.span_corruption(wordpieces, "x")


def test_bert_masking_is_the_collators_recipe(wordpieces):
    report = encoders.mlm_masking(wordpieces, TEXT, encoders.MaskingSpec(seed=5), draws=3000)
    measured = report["measured"]
    assert measured["chosen_share"] == pytest.approx(0.15, abs=0.01)
    assert measured["mask_share"] == pytest.approx(0.8, abs=0.02)
    assert measured["random_share"] == pytest.approx(0.1, abs=0.015)
    assert measured["kept_share"] == pytest.approx(0.1, abs=0.015)
    tokens = report["tokens"]
    assert all(t["became"] is None for t in tokens if t["special"])  # [CLS] and [SEP] are never chosen
    for t in tokens:
        if t["became"] == "mask":
            assert t["shown"] == "[MASK]"
        if t["became"] == "kept" or t["became"] is None:
            assert t["shown"] == t["piece"]
    again = encoders.mlm_masking(wordpieces, TEXT, encoders.MaskingSpec(seed=5), draws=10)
    assert [t["became"] for t in again["tokens"]] == [t["became"] for t in tokens], "a seed is one draw"
    with pytest.raises(InvalidParameter, match="text: is empty"):
        encoders.mlm_masking(wordpieces, "   ")


def test_the_encoder_looks_both_ways_and_the_decoder_only_back(tiny_handle):
    report = encoders.attention_both_ways(tiny_handle, "The cat sat on the mat because it was tired.")
    assert report["encoder"]["to_the_right"] > 0.2
    assert report["decoder"]["to_the_right"] == 0.0
    for side in ("encoder", "decoder"):
        weights = report[side]["weights"]
        assert len(weights) == len(report[side]["tokens"])
        assert all(sum(row) == pytest.approx(1, abs=1e-3) for row in weights)


def test_sentence_order_scores_both_orders(tiny_handle):
    report = encoders.sentence_order(tiny_handle, "She put the kettle on.", "Then she poured the tea.")
    margin = report["in_order"]["log_likelihood"] - report["swapped"]["log_likelihood"]
    assert report["log_ratio"] == pytest.approx(margin)
    assert report["model_prefers"] == ("in order" if margin > 0 else "swapped")
    with pytest.raises(InvalidParameter, match="two sentences"):
        encoders.sentence_order(tiny_handle, "One.", "")
