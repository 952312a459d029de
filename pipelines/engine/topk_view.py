"""The next-token distribution rebuilt from the top-K alternatives a server returns.

A remote server gives the K most likely tokens and their log-probabilities at T = 1, not the
logits. The rest of the vocabulary is one known mass (1 - the top K's), shown as one bar "other",
whose split between tokens is unknown. What follows from that:

- the model's chart (T = 1): exact for the K tokens; "other" is a lump, so the chart is marked
  approximate whenever it holds any mass;
- temperature: the K tokens' relative weights are exact; their share against the tail is not
  (it depends on how the tail's mass is spread), so T != 1 with a tail still in play is approximate;
- top-k with k <= K and min-p whose threshold cuts the K-th token: which tokens are kept is exact,
  and so is the distribution over them (the tail is cut: every tail token is below the K-th);
- top-p: exact while the nucleus closes inside the K tokens and their probabilities are exact
  (T = 1, or the tail already cut); else approximate;
- the repetition penalty needs the token ids the server saw: not shown, marked approximate.

The filters run in the order `sampling.process_logits` uses (temperature, top-k, top-p, min-p).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pipelines.engine.sampling import (
    OTHER_TOKENS as OTHER,
)
from pipelines.engine.sampling import (
    CandidateRow,
    DistributionView,
    SamplingParams,
    entropy_bits,
)


def rebuild(top: Sequence[tuple[str, float]], params: SamplingParams) -> DistributionView:
    """A DistributionView from (token, logprob at T = 1) pairs; `approximate` says what is not exact."""
    known = sorted(((t, lp) for t, lp in top if math.isfinite(lp)), key=lambda x: -x[1])
    raw = [math.exp(lp) for _, lp in known]
    tail = max(0.0, 1.0 - sum(raw))
    notes: list[str] = []  # what makes the distribution under the settings inexact
    # weights under temperature (unnormalised); the tail as one lump with the same exponent
    if params.greedy:
        keep = [i == 0 for i in range(len(known))]
        return _view(
            known,
            raw,
            tail,
            [1.0 if k else 0.0 for k in keep],
            0.0,
            ["" if k else "greedy" for k in keep],
            "greedy",
            notes,
        )
    exponent = 1.0 / params.temperature
    weights = [p**exponent for p in raw]
    tail_weight = tail**exponent if tail > 0 else 0.0
    tail_in = tail > 1e-6
    inexact_weights = tail_in and params.temperature != 1.0  # until a filter cuts the tail
    cut = [""] * len(known)
    tail_cut = ""
    if params.top_k > 0:
        if params.top_k <= len(known):
            for i in range(params.top_k, len(known)):
                cut[i] = "top-k"
            if tail_in:
                tail_cut, tail_in = "top-k", False
        elif tail_in:
            notes.append(f"top-k {params.top_k} reaches into the tail beyond the top {len(known)}")
    if params.top_p < 1.0:
        total = sum(w for w, c in zip(weights, cut, strict=False) if not c) + (tail_weight if tail_in else 0.0)
        running, closed = 0.0, False
        for i, w in enumerate(weights):
            if cut[i]:
                continue
            if closed:
                cut[i] = "top-p"
                continue
            running += w / total
            closed = running >= params.top_p - 1e-12
        if closed:
            if tail_in:
                tail_cut, tail_in = "top-p", False
                if inexact_weights:
                    notes.append("top-p's cut depends on the tail's share under temperature, which is estimated")
        elif tail_in:
            notes.append("top-p's nucleus reaches into the tail")
    if params.min_p > 0.0:
        threshold = params.min_p * max(weights, default=0.0)
        for i, w in enumerate(weights):
            if not cut[i] and w < threshold:
                cut[i] = "min-p"
        if tail_in:
            if weights and weights[-1] < threshold:  # every tail token is below the K-th: all cut
                tail_cut, tail_in = "min-p", False
            else:
                notes.append("min-p keeps part of the tail")
    if tail_in and inexact_weights:
        notes.append("temperature's share of the tail is estimated")
    elif tail_in:
        notes.append(f"tokens beyond the server's top {len(known)} can still be sampled; they are one bar")
    if params.repetition_penalty != 1.0:
        notes.append("the repetition penalty (applied by the server) is not shown")
    final = [0.0 if c else w for w, c in zip(weights, cut, strict=False)]
    final_tail = tail_weight if tail_in else 0.0
    total = sum(final) + final_tail
    final = [w / total for w in final] if total > 0 else final
    final_tail = final_tail / total if total > 0 else 0.0
    return _view(known, raw, tail, final, final_tail, cut, tail_cut, notes)


def _view(
    known: list[tuple[str, float]],
    raw: list[float],
    tail: float,
    final: list[float],
    final_tail: float,
    cut: list[str],
    tail_cut: str,
    notes: list[str],
) -> DistributionView:
    rows = [
        CandidateRow(token=t, id=-1, raw_prob=p, final_prob=f, cut_by=c)
        for (t, _), p, f, c in zip(known, raw, final, cut, strict=False)
    ]
    if tail > 1e-6:
        rows.append(CandidateRow(token=OTHER, id=-1, raw_prob=tail, final_prob=final_tail, cut_by=tail_cut))
    cut_mass = sum(p for p, c in zip(raw, cut, strict=False) if c) + (tail if tail_cut else 0.0)
    return DistributionView(
        rows=rows,
        raw_entropy_bits=entropy_bits(torch.tensor(raw + [tail])),
        final_entropy_bits=entropy_bits(torch.tensor(final + [final_tail])),
        kept_tokens=sum(1 for c in cut if not c),
        vocab_size=0,
        cut_mass=cut_mass,
        approximate="; ".join(dict.fromkeys(notes)),
        tail_kept=final_tail > 0,
    )


def sampled_probability(top: Sequence[tuple[str, float]], token: str, params: SamplingParams) -> float | None:
    """The probability `token` had under the settings, from the alternatives; None when it is not among them."""
    view = rebuild(top, params)
    for row in view.rows:
        if row.token == token and row.token != OTHER:
            return row.final_prob
    return None
