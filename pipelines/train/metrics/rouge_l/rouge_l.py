"""ROUGE-L F1 as an `evaluate` metric module, backed by Google's `rouge-score` package.

Shipped with the project and loaded by path (`evaluate.load(<this file>)`) because
`evaluate.load("rouge")` fetches its script from the Hub, which is unreachable offline.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = """ROUGE-L: F1 of the longest common subsequence between a prediction and its reference,
averaged over examples. Rewards getting the reference's words in the reference's order."""

_KWARGS = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, one per prediction.
    use_stemmer: Porter-stem words before matching (default True).
Returns:
    {"rougeL": mean F1 in [0, 1], "rougeL_precision": ..., "rougeL_recall": ...}
"""

_CITATION = """@inproceedings{lin-2004-rouge, title={ROUGE: A Package for Automatic Evaluation of Summaries},
author={Lin, Chin-Yew}, booktitle={Text Summarization Branches Out}, year={2004}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, use_stemmer=True):
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
        scores = [scorer.score(ref, pred)["rougeL"] for pred, ref in zip(predictions, references, strict=False)]
        n = max(len(scores), 1)
        return {
            "rougeL": sum(s.fmeasure for s in scores) / n,
            "rougeL_precision": sum(s.precision for s in scores) / n,
            "rougeL_recall": sum(s.recall for s in scores) / n,
        }
