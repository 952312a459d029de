"""ROUGE-L and BLEU of one reference/candidate pair, drawn: the shared subsequence highlighted,
the n-gram counts and the brevity penalty in a table (pipelines/train/metric_explain.py computes them)."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from pipelines.train import metric_explain

from .errors import UserError


def _words(words: list[str], matched: list[int]) -> str:
    keep = set(matched)
    return " ".join(
        f"<mark class='lcs'>{html.escape(w)}</mark>" if i in keep else f"<span class='muted'>{html.escape(w)}</span>"
        for i, w in enumerate(words)
    )


def explain_html(reference: str, candidate: str) -> str:
    """The whole explanation of one pair, as HTML."""
    if not (reference or "").strip() or not (candidate or "").strip():
        raise UserError("Give both a reference and a candidate answer to compare.")
    rouge = metric_explain.rouge_l(reference, candidate)
    bleu = metric_explain.bleu(reference, candidate)
    lcs = len(rouge.matched_reference)
    rows = "".join(
        f"<tr><td>{n + 1}-grams</td><td>{bleu.matches[n]} / {bleu.totals[n]}</td><td>{bleu.precisions[n]:.1f}%</td>"
        f"<td>{html.escape(', '.join(g for g, _, credited in bleu.ngrams[n] if credited)[:200]) or '—'}</td></tr>"
        for n in range(4)
    )
    mean = metric_explain.geometric_mean([p / 100 for p in bleu.precisions])
    ratio = bleu.candidate_length / max(bleu.reference_length, 1)
    return (
        "<div class='metric-explain'>"
        "<h4>ROUGE-L: the longest common subsequence</h4>"
        "<p class='muted'>Words are lower-cased and stemmed; the highlighted ones form one longest sequence "
        "that appears in both texts in the same order (gaps allowed).</p>"
        f"<p><b>Reference</b> ({len(rouge.reference)} words): {_words(rouge.reference, rouge.matched_reference)}</p>"
        f"<p><b>Candidate</b> ({len(rouge.candidate)} words): {_words(rouge.candidate, rouge.matched_candidate)}</p>"
        f"<p>LCS = <b>{lcs}</b> words · precision = {lcs}/{len(rouge.candidate)} = <b>{rouge.precision:.3f}</b> · "
        f"recall = {lcs}/{len(rouge.reference)} = <b>{rouge.recall:.3f}</b> · "
        f"F1 = 2PR/(P+R) = <b>{rouge.f1:.3f}</b></p>"
        "<h4>BLEU: clipped n-gram precision × brevity penalty</h4>"
        "<p class='muted'>Each candidate n-gram counts at most as often as it occurs in the reference.</p>"
        "<table><tr><th>n</th><th>matched / in candidate</th><th>precision</th><th>matched n-grams</th></tr>"
        f"{rows}</table>"
        + (
            "<p class='muted'>A precision with no match is smoothed, as sacrebleu does by default ('exp'): "
            "the k-th such precision becomes 1 / (2<sup>k</sup> × n-grams in the candidate), so one missing "
            "n-gram order does not make the score 0.</p>"
            if 0 in bleu.matches
            else ""
        )
        + f"<p>geometric mean of the four precisions = <b>{mean:.3f}</b>"
        + (" (the candidate is too short to have every n-gram order, so the mean is 0)" if mean == 0 else "")
        + f" · brevity penalty = {'1' if ratio >= 1 else 'exp(1 − r/c)'} with c = {bleu.candidate_length}, "
        f"r = {bleu.reference_length} → <b>{bleu.brevity_penalty:.3f}</b> · "
        f"BLEU = 100 × BP × mean = <b>{bleu.bleu:.2f}</b></p>"
        "</div>"
    )


def build() -> dict[str, Any]:
    """The explainer's controls: two texts and a button (a tab may fill the texts from its rows)."""
    with gr.Accordion("Explain the scores of one answer: ROUGE-L and BLEU, step by step", open=False):
        with gr.Row():
            reference = gr.Textbox(label="Reference", lines=3, elem_id="explain-reference")
            candidate = gr.Textbox(label="Candidate (a model's answer)", lines=3, elem_id="explain-candidate")
        button = gr.Button("Explain the scores")
        shown = gr.HTML()
    button.click(explain_html, [reference, candidate], shown, api_name="explain_metrics")
    return {"reference": reference, "candidate": candidate, "html": shown}
