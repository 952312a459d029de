"""The project's evaluate metric modules equal the packages they wrap."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from pipelines.train import evaluation

PREDICTIONS = ["the cat sat on the mat", "a quick brown fox jumps", "In short: Paris is the capital."]
REFERENCES = [
    "a cat was sitting on the mat",
    "the quick brown fox jumped over",
    "In short: The capital of France is Paris.",
]


def test_rouge_l_module_equals_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDICTIONS, REFERENCES, strict=False)) / len(
        PREDICTIONS
    )
    result = evaluation.load_metric("rouge_l").compute(predictions=PREDICTIONS, references=REFERENCES)
    assert result["rougeL"] == pytest.approx(expected, abs=1e-12)


def test_bleu_module_equals_sacrebleu():
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    result = evaluation.load_metric("bleu").compute(predictions=PREDICTIONS, references=REFERENCES)
    assert result["bleu"] == pytest.approx(expected, abs=1e-12)
    assert evaluation.text_metrics(PREDICTIONS, REFERENCES)["bleu"] == pytest.approx(expected)


def test_identical_texts_score_perfectly_and_unknown_metric_is_refused():
    scores = evaluation.text_metrics(REFERENCES, REFERENCES)
    assert scores["rougeL"] == pytest.approx(1.0) and scores["bleu"] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        evaluation.load_metric("rouge")


def test_text_perplexity_matches_the_model_loss(tiny_handle):
    import torch

    text = evaluation.general_text()[:400]
    ids = tiny_handle.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        expected = math.exp(float(tiny_handle.model(input_ids=ids, labels=ids).loss))
    assert ids.shape[1] < 256
    assert evaluation.text_perplexity(tiny_handle.model, tiny_handle.tokenizer, text, window=256) == pytest.approx(
        expected, rel=1e-5
    )
    # a sliding window scores every token once; with context cut short the value moves only a little
    windowed = evaluation.text_perplexity(tiny_handle.model, tiny_handle.tokenizer, text, window=48, stride=24)
    assert math.isfinite(windowed) and windowed == pytest.approx(expected, rel=0.5)
    assert evaluation.perplexity_of(math.log(7.0)) == pytest.approx(7.0)
