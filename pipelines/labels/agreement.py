"""How far annotators agree: raw agreement, Cohen's kappa per pair, Krippendorff's alpha overall.

A two-response vote is coded on one ordinal scale, A better (0) < tie (1) < B better (2): "A and
B equally good" lies between the two preferences. **Both bad** is coded as a tie on that scale:
it prefers neither response, which is all the order can say (how good they are is another
question). Rankings of 3-4 responses and thumbs on one reply are not on this scale and are left
out (counted in `excluded`). Every annotator of an item sees the same display positions, so "A"
names the same response for all of them.

- raw agreement: the share of pairs of votes on the same item that are equal;
- Cohen's kappa (scikit-learn), per pair of annotators over their shared items: agreement
  corrected for what their own label frequencies would give by chance;
- Krippendorff's alpha (the `krippendorff` package), ordinal, for everyone at once: any number of
  annotators, missing votes allowed; 1 = perfect, 0 = chance, below 0 = systematic disagreement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from pipelines.labels.preferences import ItemView

SCALE = {"A": 0, "tie": 1, "both_bad": 1, "B": 2}
LABELS = (0, 1, 2)


def coded_votes(items: Sequence[ItemView]) -> tuple[dict[str, dict[str, int]], int]:
    """({item id: {annotator: code}}, number of votes left out) over two-response items."""
    coded: dict[str, dict[str, int]] = {}
    excluded = 0
    for item in items:
        for label in item.labels:
            if len(item.responses) == 2 and label.choice in SCALE:
                coded.setdefault(item.id, {})[label.annotator] = SCALE[label.choice]
            else:
                excluded += 1
    return coded, excluded


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def cohen_kappa(first: Sequence[int], second: Sequence[int]) -> float | None:
    """None where kappa is undefined (both always gave one and the same label: no chance to correct)."""
    from sklearn.metrics import cohen_kappa_score

    if len(set(first) | set(second)) < 2:
        return None
    return _finite(cohen_kappa_score(list(first), list(second), labels=list(LABELS)))


def krippendorff_alpha(coded: dict[str, dict[str, int]]) -> float | None:
    """Ordinal alpha over every item with at least two votes; None without such items or variation."""
    import krippendorff
    import numpy as np

    shared = {item: votes for item, votes in coded.items() if len(votes) >= 2}
    annotators = sorted({a for votes in shared.values() for a in votes})
    if not shared or len({v for votes in shared.values() for v in votes.values()}) < 2:
        return None
    data = np.full((len(annotators), len(shared)), np.nan)
    for column, votes in enumerate(shared.values()):
        for annotator, code in votes.items():
            data[annotators.index(annotator), column] = code
    return _finite(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=LABELS))


def agreement(items: Sequence[ItemView]) -> dict[str, Any]:
    """Raw agreement, alpha, and each pair of annotators who share items, with position bias per annotator."""
    coded, excluded = coded_votes(items)
    same = pairs = 0
    for votes in coded.values():
        for a, b in itertools.combinations(votes.values(), 2):
            pairs += 1
            same += a == b
    annotators = sorted({a for votes in coded.values() for a in votes})
    by_pair = []
    for first, second in itertools.combinations(annotators, 2):
        shared = [(v[first], v[second]) for v in coded.values() if first in v and second in v]
        if not shared:
            continue
        x, y = zip(*shared, strict=False)
        by_pair.append(
            {
                "annotators": [first, second],
                "shared_items": len(shared),
                "raw": sum(a == b for a, b in shared) / len(shared),
                "cohen_kappa": cohen_kappa(x, y),
            }
        )
    bias = []
    for annotator in annotators:
        decisive = [v[annotator] for v in coded.values() if annotator in v and v[annotator] != 1]
        bias.append(
            {
                "annotator": annotator,
                "decisive_votes": len(decisive),
                "left_wins": sum(code == 0 for code in decisive) / len(decisive) if decisive else None,
            }
        )
    return {
        "raw": same / pairs if pairs else None,
        "vote_pairs": pairs,
        "krippendorff_alpha": krippendorff_alpha(coded),
        "pairs": by_pair,
        "position_bias": bias,
        "excluded": excluded,
    }
