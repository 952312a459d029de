"""What the labels say: counts, annotator agreement, and a leaderboard of sources by win rate."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, Sequence


from . import preferences
from .preferences import THUMBS, TWO_WAY, ItemView


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
    return "no vote between two different sources can be scored yet."


def leaderboard(items: Sequence[ItemView] | None = None) -> list[dict[str, Any]]:
    """Bradley-Terry ratings of the response sources from the votes, as in chatbot arenas.

    Every pair implied by a vote is one comparison; a tie counts as half a win each way. Ratings
    are on an Elo-like scale (400 log10 units, mean 1000).
    """
    import choix
    import numpy as np

    items = list(items if items is not None else preferences.all_items())
    comparisons: list[tuple[str, str, float]] = []
    for item in items:
        source = {r.position: r.source for r in item.responses}
        for label in item.labels:
            if label.choice in THUMBS:
                continue
            for group in label.ranking:  # ties inside a group
                for a, b in itertools.combinations(group, 2):
                    if source[a] != source[b]:
                        comparisons.append((source[a], source[b], 0.5))
            for better_group, worse_group in itertools.combinations(label.ranking, 2):
                for better, worse in itertools.product(better_group, worse_group):
                    if source[better] != source[worse]:
                        comparisons.append((source[better], source[worse], 1.0))
    names = sorted({n for a, b, _ in comparisons for n in (a, b)})
    if len(names) < 2:
        return []
    index = {name: i for i, name in enumerate(names)}
    data: list[tuple[int, int]] = []
    record: dict[str, Counter[str]] = {name: Counter() for name in names}
    for winner, loser, weight in comparisons:
        if weight == 1.0:
            data.append((index[winner], index[loser]))
            record[winner]["wins"] += 1
            record[loser]["losses"] += 1
        else:  # a tie: one win each way keeps the counts integral and the estimate symmetric
            data.extend([(index[winner], index[loser]), (index[loser], index[winner])])
            record[winner]["ties"] += 1
            record[loser]["ties"] += 1
    params = choix.ilsr_pairwise(len(names), data, alpha=0.01)
    scale = 400 / np.log(10)
    ratings = 1000 + scale * (params - params.mean())
    table = [
        {
            "source": name,
            "rating": round(float(ratings[index[name]]), 1),
            "wins": record[name]["wins"],
            "losses": record[name]["losses"],
            "ties": record[name]["ties"],
            "comparisons": record[name]["wins"] + record[name]["losses"] + record[name]["ties"],
        }
        for name in names
    ]
    return sorted(table, key=lambda row: -row["rating"])
