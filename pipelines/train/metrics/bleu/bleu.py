"""Corpus BLEU as an `evaluate` metric module, backed by `sacrebleu` (standard tokenisation).

Shipped with the project and loaded by path, so evaluation works offline.
"""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """BLEU (Papineni et al., 2002) as computed by sacrebleu: the geometric mean of 1-4-gram
precisions over the whole corpus, times a brevity penalty, on a 0-100 scale."""

_KWARGS = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, one per prediction.
    tokenize: sacrebleu tokeniser (default "13a", the WMT standard).
Returns:
    {"bleu": score in [0, 100], "precisions": [p1..p4], "brevity_penalty": float, "signature": str}
"""

_CITATION = """@inproceedings{post-2018-call, title={A Call for Clarity in Reporting {BLEU} Scores},
author={Post, Matt}, booktitle={Proceedings of the Third Conference on Machine Translation}, year={2018}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions, references, tokenize="13a"):
        metric = sacrebleu.metrics.BLEU(tokenize=tokenize)
        result = metric.corpus_score(list(predictions), [list(references)])
        return {
            "bleu": result.score,
            "precisions": list(result.precisions),
            "brevity_penalty": result.bp,
            "signature": str(metric.get_signature()),
        }
