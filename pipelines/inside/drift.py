"""Drift (issue 38, safety and data): are the prompts people send now like the ones the model
was checked on? A deployed model is evaluated once, on a reference set; when the traffic moves
(another language, longer prompts, a new topic) those figures stop describing it, and nothing
fails loudly. Monitoring compares the two distributions feature by feature:

- **features** per prompt: its length in tokens, and its perplexity under the app's model (how
  surprising the prompt is to the model: a new language or domain is surprising);
- **two-sample Kolmogorov-Smirnov test** (`scipy.stats.ks_2samp`): the largest gap between the
  two empirical distribution functions, and how likely a gap that large is if both sets came from
  one distribution (the p-value);
- **population stability index** (PSI), the monitoring industry's figure: the reference's deciles
  as bins, PSI = sum over bins of (recent share - reference share) * ln(recent share / reference
  share). Below 0.1 is usually read as stable, 0.1-0.25 as moderate drift, above 0.25 as major.
  It is reported, not tested: on a few dozen prompts chance alone can push it past 0.25 (one of six
  random splits of one set did here), so the flag is the KS test's.

The sets: the label store's newest prompts against the ones stored before them (what annotators
see is what the deployed model is asked), or any two lists of prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines import inside, knobs
from pipelines.config import DATASETS
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob

EXAMPLE_RECENT = DATASETS / "drift_recent_prompts.txt"
REFERENCE_PAIRS = DATASETS / "preference_pairs.jsonl"
MIN_PROMPTS = 5
MAX_PROMPTS = 300  # per set: each prompt is one forward pass
MAX_PROMPT_CHARS = 4_000
BINS = 10
EPSILON = 1e-4  # an empty bin's share, so that ln() stays finite (the usual PSI convention)


@dataclass(frozen=True)
class DriftSpec:
    """How recent prompts are told from the reference, and when a difference counts as drift."""

    recent: int = knob(
        30,
        help="label store: the newest N prompts are 'recent', up to 200 stored before them the reference",
        label="Recent prompts",
        low=MIN_PROMPTS,
        high=MAX_PROMPTS,
        slider=False,
    )
    p_value: float = knob(
        0.01,
        help="a Kolmogorov-Smirnov p-value below this flags the feature",
        label="Significance (p)",
        low=0.0001,
        high=0.2,
        step=0.0001,
        slider=False,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


def example_sets() -> tuple[str, str]:
    """(reference, recent) as text, one prompt per line: the bundled preference prompts (short
    English science and history questions) and a bundled 'recent' set that has moved."""
    import json

    reference = [json.loads(line)["prompt"][-1]["content"] for line in REFERENCE_PAIRS.read_text("utf-8").splitlines()]
    return "\n".join(reference), EXAMPLE_RECENT.read_text(encoding="utf-8").strip()


def lines(text: str | None, param: str) -> list[str]:
    """One prompt per non-empty line, checked: enough of them, not too many, none too long."""
    return knobs.checked_lines(text, param, fewest=MIN_PROMPTS, most=MAX_PROMPTS, max_chars=MAX_PROMPT_CHARS)


def label_store_sets(spec: DriftSpec) -> tuple[list[str], list[str]]:
    """(reference, recent) from the label store: the newest `spec.recent` prompts, and up to 200
    stored before them."""
    from pipelines.labels import preferences

    items = preferences.list_items(limit=spec.recent + 200)  # newest first
    texts = [item.prompt_text for item in items]
    recent, reference = texts[: spec.recent], texts[spec.recent :]
    if len(reference) < MIN_PROMPTS:
        raise InvalidParameter(
            "recent",
            f"the label store holds {len(texts)} prompts: it needs at least {spec.recent + MIN_PROMPTS} to compare "
            f"its newest {spec.recent} with those before them (or compare two lists of prompts)",
        )
    return reference[::-1], recent[::-1]


def _psi(reference: np.ndarray, recent: np.ndarray) -> float:
    """PSI over the reference's quantile bins: ten (deciles) with 100 recent prompts or more, fewer
    with fewer (about ten recent prompts per bin: with three per bin, chance alone pushes PSI past 0.25)."""
    bins = int(min(BINS, max(2, len(recent) // 10)))
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    new_share = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=len(edges) + 1) / len(recent)
    ref_share, new_share = np.maximum(ref_share, EPSILON), np.maximum(new_share, EPSILON)
    return float(np.sum((new_share - ref_share) * np.log(new_share / ref_share)))


def _feature(name: str, reference: list[float], recent: list[float], spec: DriftSpec) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    a, b = np.asarray(reference, dtype=float), np.asarray(recent, dtype=float)
    test = ks_2samp(a, b)
    psi = _psi(a, b)
    return {
        "feature": name,
        "reference_median": float(np.median(a)),
        "recent_median": float(np.median(b)),
        "ks_statistic": float(test.statistic),
        "p_value": float(test.pvalue),
        "psi": psi,
        "psi_reading": "stable" if psi < 0.1 else "moderate" if psi <= 0.25 else "major",
        "drifted": bool(test.pvalue < spec.p_value),
    }


def compare(handle: Any, reference: list[str], recent: list[str], spec: DriftSpec | None = None) -> dict[str, Any]:
    """Both sets' features, each feature's test, and the recent prompts the model finds least like
    the reference (highest perplexity first)."""
    spec = spec or DriftSpec()
    rows: list[dict[str, Any]] = []
    for which, prompts in (("reference", reference), ("recent", recent)):
        for text in prompts:
            ids = handle.tokenizer(text, add_special_tokens=False)["input_ids"]
            measured = inside.perplexity(handle, text, truncate=True) if len(ids) >= 2 else None
            rows.append(
                {
                    "set": which,
                    "prompt": text,
                    "tokens": len(ids),
                    "perplexity": None if measured is None else measured["perplexity"],
                }
            )
    features = []
    for name in ("tokens", "perplexity"):
        values = {
            which: [
                math.log(r[name]) if name == "perplexity" else float(r[name])
                for r in rows
                if r["set"] == which and r[name] is not None
            ]
            for which in ("reference", "recent")
        }
        if min(len(v) for v in values.values()) < MIN_PROMPTS:
            continue  # one-token prompts have no perplexity
        found = _feature(name, values["reference"], values["recent"], spec)
        if name == "perplexity":  # tested on log perplexity (the mean loss); medians shown as perplexities
            found["reference_median"], found["recent_median"] = (
                math.exp(found["reference_median"]),
                math.exp(found["recent_median"]),
            )
        features.append(found)
    recent_rows = sorted((r for r in rows if r["set"] == "recent"), key=lambda r: -(r["perplexity"] or 0))
    return {
        "reference": len(reference),
        "recent": len(recent),
        "features": features,
        "drifted": any(f["drifted"] for f in features),
        "most_unusual": recent_rows[:10],
        "prompts": rows,
    }
