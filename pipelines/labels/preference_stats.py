"""What the labels say: counts, annotator agreement, and a leaderboard of sources by win rate."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from pipelines.labels import drives, preferences
from pipelines.labels.preferences import THUMBS, TWO_WAY, ItemView

# --- what the labels say -----------------------------------------------------------------------


def stats(items: Sequence[ItemView] | None = None) -> dict[str, Any]:
    """Totals, labels per annotator, agreement, position bias, tie and both-bad rates."""
    items = list(items if items is not None else preferences.all_items())
    labels = [label for item in items for label in item.labels]
    per_annotator = Counter(label.annotator for label in labels)
    choices = Counter(label.choice for label in labels)
    two_way = [lb for lb in labels if lb.choice in TWO_WAY]
    decisive = [lb for lb in two_way if lb.choice in ("A", "B")]
    agree = total_pairs = 0
    for item in items:
        votes = [lb for lb in item.labels if lb.choice not in THUMBS]
        for a, b in itertools.combinations(votes, 2):
            total_pairs += 1
            agree += a.ranking == b.ranking and (a.choice == "both_bad") == (b.choice == "both_bad")
    return {
        "items": len(items),
        "labels": len(labels),
        "labelled_items": sum(1 for item in items if item.labels),
        "per_annotator": dict(per_annotator.most_common()),
        "choices": dict(choices),
        "agreement": agree / total_pairs if total_pairs else None,
        "agreement_pairs": total_pairs,
        "left_wins": sum(lb.choice == "A" for lb in decisive) / len(decisive) if decisive else None,
        "decisive_votes": len(decisive),
        "tie_rate": choices["tie"] / len(two_way) if two_way else None,
        "both_bad_rate": choices["both_bad"] / len(two_way) if two_way else None,
    }


def leaderboard_gap(items: Sequence[ItemView] | None = None) -> str:
    """Why `leaderboard` has nothing to rank, in a sentence a person can act on."""
    items = list(items if items is not None else preferences.all_items())
    compared = [item for item in items if any(label.choice not in THUMBS for label in item.labels)]
    if not compared:
        return "no comparison votes yet (👍/👎 on a single reply rank nothing)."
    if not any(len({r.source for r in item.responses}) > 1 for item in compared):
        sources = ", ".join(sorted({r.source for item in compared for r in item.responses}))
        return (
            f"every vote so far compares responses of one source with each other ({sources}), so no source can beat "
            "another. Pick different models for Source A and B (e.g. the base model and an adapter) to rank them."
        )
    return "needs at least two sources with decisive votes (every vote between two sources so far is a tie)."


def _votes(items: Sequence[ItemView]) -> list[list[tuple[str, str, float]]]:
    """Each vote as the comparisons between different sources it implies: (winner, loser, 1.0) or,
    for two responses it ranks equal, (one, other, 0.5). A vote stays one unit so the bootstrap
    resamples votes, not the pairs a ranking of four expands into."""
    votes = []
    for item in items:
        source = {r.position: r.source for r in item.responses}
        for label in item.labels:
            if label.choice in THUMBS:
                continue
            implied: list[tuple[str, str, float]] = []
            for group in label.ranking:  # ties inside a group
                for a, b in itertools.combinations(group, 2):
                    if source[a] != source[b]:
                        implied.append((source[a], source[b], 0.5))
            for better_group, worse_group in itertools.combinations(label.ranking, 2):
                for better, worse in itertools.product(better_group, worse_group):
                    if source[better] != source[worse]:
                        implied.append((source[better], source[worse], 1.0))
            if implied:
                votes.append(implied)
    return votes


def _sources(votes: Sequence[Sequence[tuple[str, str, float]]]) -> list[str]:
    return sorted({name for implied in votes for a, b, _ in implied for name in (a, b)})


SCALE = 400 / math.log(10)  # Elo-like points per natural-log unit of strength


def _fit(names: Sequence[str], votes: Sequence[Sequence[tuple[str, str, float]]]) -> Any:
    """Bradley-Terry strengths on the Elo-like scale (mean 1000); a tie counts as one win each way."""
    import choix

    index = {name: i for i, name in enumerate(names)}
    data: list[tuple[int, int]] = []
    for implied in votes:
        for winner, loser, weight in implied:
            data.append((index[winner], index[loser]))
            if weight != 1.0:  # a tie: one win each way keeps the counts integral and the estimate symmetric
                data.append((index[loser], index[winner]))
    params = choix.ilsr_pairwise(len(names), data, alpha=0.01)
    return 1000 + SCALE * (params - params.mean())


def leaderboard(items: Sequence[ItemView] | None = None, *, rounds: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Bradley-Terry ratings of the response sources from the votes, as in chatbot arenas, with
    bootstrap 95% intervals.

    Every pair implied by a vote is one comparison; a tie counts as half a win each way. Ratings
    are on an Elo-like scale (400 log10 units, mean 1000). The interval: the votes are resampled
    with replacement `rounds` times (seeded, so the same votes give the same interval), the
    ratings refitted each time, and the middle 95% kept; a source absent from a resample has no
    rating in it. Fewer votes, wider intervals.
    """
    items = list(items if items is not None else preferences.all_items())
    return ratings(_votes(items), rounds=rounds, seed=seed)


def ratings(votes: Sequence[Sequence[tuple[str, str, float]]], *, rounds: int = 200, seed: int = 0) -> list[dict]:
    """`leaderboard` from votes already turned into comparisons (each vote a list of them)."""
    import numpy as np

    names = _sources(votes)
    if len(names) < 2 or not any(weight == 1.0 for implied in votes for _, _, weight in implied):
        return []  # ties alone rank nobody: every rating would be the same
    record: dict[str, Counter[str]] = {name: Counter() for name in names}
    for implied in votes:
        for winner, loser, weight in implied:
            if weight == 1.0:
                record[winner]["wins"] += 1
                record[loser]["losses"] += 1
            else:
                record[winner]["ties"] += 1
                record[loser]["ties"] += 1
    fitted = _fit(names, votes)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        drawn = [votes[i] for i in rng.integers(0, len(votes), len(votes))]
        present = _sources(drawn)
        if len(present) < 2:
            continue
        for name, value in zip(present, _fit(present, drawn), strict=False):
            samples[name].append(float(value))
    table = []
    for i, name in enumerate(names):
        low, high = np.percentile(samples[name], [2.5, 97.5]) if samples[name] else (math.nan, math.nan)
        table.append(
            {
                "source": name,
                "rating": round(float(fitted[i]), 1),
                "ci_low": round(float(low), 1),
                "ci_high": round(float(high), 1),
                "wins": record[name]["wins"],
                "losses": record[name]["losses"],
                "ties": record[name]["ties"],
                "comparisons": record[name]["wins"] + record[name]["losses"] + record[name]["ties"],
            }
        )
    return sorted(table, key=lambda row: -row["rating"])


def win_rates(items: Sequence[ItemView] | None = None) -> dict[str, Any]:
    """How often each source beat each other one (a tie counts half), and over how many comparisons."""
    items = list(items if items is not None else preferences.all_items())
    votes = _votes(items)
    names = _sources(votes)
    won: defaultdict[tuple[str, str], float] = defaultdict(float)
    played: Counter[tuple[str, str]] = Counter()
    for implied in votes:
        for winner, loser, weight in implied:
            won[winner, loser] += weight
            won[loser, winner] += 1.0 - weight
            played[winner, loser] += 1
            played[loser, winner] += 1
    return {
        "sources": names,
        "win_rate": [[won[a, b] / played[a, b] if played[a, b] else None for b in names] for a in names],
        "comparisons": [[played[a, b] for b in names] for a in names],
    }


# --- gold checks -------------------------------------------------------------------------------


def gold_accuracy(items: Sequence[ItemView], answers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each annotator's record on gold items: {name: {"gold_answered", "gold_correct", "gold_accuracy"}}.

    `answers` maps item ids to `drives.GoldAnswer`. Annotators with no gold answered are absent:
    their accuracy is unknown, not zero.
    """
    return drives.gold_record(
        (label.annotator, answers[item.id], label.choice, label.ranking)
        for item in items
        if item.id in answers
        for label in item.labels
    )
