"""Agreement and ratings with uncertainty, checked against hand-computed tables and simulated votes."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from pipelines.engine.chat import Message
from pipelines.labels import agreement, preference_stats, preferences
from pipelines.labels.preferences import ResponseDraft
from pipelines.store import db


@pytest.fixture(autouse=True)
def fresh_db(data_dir):
    db.dispose_all()
    yield
    db.dispose_all()


def vote_on_items(votes_by_annotator: dict[str, list[str]], sources=("base", "tuned")) -> list:
    """One two-response item per column; each annotator's row of votes (None = did not vote)."""
    n = len(next(iter(votes_by_annotator.values())))
    items = []
    for column in range(n):
        drafts = [ResponseDraft(f"answer {i}", source=s, model="m") for i, s in enumerate(sources)]
        made = preferences.create_item([Message("user", f"question {column}")], drafts, rng=random.Random(column))
        for annotator, row in votes_by_annotator.items():
            if row[column] is not None:
                preferences.submit_label(made.id, annotator, row[column])
        items.append(made)
    return list(preferences.all_items())


def test_agreement_matches_hand_computed_tables():
    items = vote_on_items(
        {
            "alice": ["A", "A", "A", "B", "B", "tie", "A", "B", "A", "B"],
            "bob": ["A", "A", "B", "B", "B", "tie", "A", "B", "tie", "B"],
        }
    )
    result = agreement.agreement(items)
    assert result["raw"] == pytest.approx(0.8) and result["vote_pairs"] == 10
    (pair,) = result["pairs"]
    # by hand: p_o = 8/10; alice 5 A, 1 tie, 4 B; bob 3 A, 2 tie, 5 B: p_e = (15 + 2 + 20) / 100
    assert pair["annotators"] == ["alice", "bob"] and pair["shared_items"] == 10
    assert pair["cohen_kappa"] == pytest.approx((0.8 - 0.37) / (1 - 0.37))
    bias = {row["annotator"]: row["left_wins"] for row in result["position_bias"]}
    assert bias == {"alice": pytest.approx(5 / 9), "bob": pytest.approx(3 / 8)}


def test_krippendorff_alpha_ordinal_by_hand_and_what_it_leaves_out():
    # three items: (A, A), (B, B), (A, tie). Values 0,0,2,2,0,1: n0 = 3, n1 = 1, n2 = 2, n = 6.
    # Ordinal distances: d(0,1) = (3 + 1 - 2)^2 = 4, d(0,2) = (6 - 2.5)^2 = 12.25, d(1,2) = (3 - 1.5)^2 = 2.25.
    # Observed: the one (A, tie) pair both ways, 2 * 4 / 6 = 4/3. Expected: 2 * (3*1*4 + 3*2*12.25 + 1*2*2.25) / 30 = 6.
    # alpha = 1 - (4/3) / 6 = 7/9.
    items = vote_on_items({"alice": ["A", "B", "A"], "bob": ["A", "B", "tie"]})
    assert agreement.agreement(items)["krippendorff_alpha"] == pytest.approx(7 / 9)
    # both-bad prefers neither response: on the order scale it is a tie, so it agrees with one
    items = vote_on_items({"carol": ["tie", "A"], "dave": ["both_bad", "A"]})
    assert agreement.coded_votes(items)[0] and agreement.agreement(items)["pairs"][-1]["raw"] == 1.0


def test_rankings_and_thumbs_are_left_out_and_counted():
    three = preferences.create_item(
        [Message("user", "q")], [ResponseDraft(f"a{i}", source=f"s{i}", model="m") for i in range(3)]
    )
    preferences.submit_label(three.id, "alice", "ranking", ranking=[[0], [1, 2]])
    one = preferences.create_item([Message("user", "q")], [ResponseDraft("only", source="base", model="m")])
    preferences.submit_label(one.id, "alice", "up")
    result = agreement.agreement(list(preferences.all_items()))
    assert result["excluded"] == 2 and result["raw"] is None and result["krippendorff_alpha"] is None
    assert result["pairs"] == []


def simulated_votes(strengths: dict[str, float], n: int, rng: random.Random) -> list:
    names = list(strengths)
    votes = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        p_a = 1 / (1 + math.exp(strengths[b] - strengths[a]))
        votes.append([(a, b, 1.0)] if rng.random() < p_a else [(b, a, 1.0)])
    return votes


def test_bootstrap_intervals_cover_the_true_strengths_and_shrink_with_more_votes():
    strengths = {"base": 0.0, "sft": 0.6, "dpo": 1.0, "bad": -0.8}
    mean = sum(strengths.values()) / len(strengths)
    truth = {k: 1000 + preference_stats.SCALE * (v - mean) for k, v in strengths.items()}
    covered = total = 0
    widths = {200: [], 800: []}
    for seed in range(50):
        for n in (200, 800) if seed < 10 else (200,):
            board = preference_stats.ratings(simulated_votes(strengths, n, random.Random(seed)), rounds=100, seed=seed)
            for row in board:
                widths[n].append(row["ci_high"] - row["ci_low"])
                if n == 200:
                    total += 1
                    covered += row["ci_low"] <= truth[row["source"]] <= row["ci_high"]
    assert covered / total >= 0.9, f"the 95% intervals covered the true rating in {covered}/{total}"
    assert np.mean(widths[800]) < 0.65 * np.mean(widths[200])  # ~1/2 expected: four times the votes


def test_ratings_are_seeded_and_a_tie_only_drive_ranks_nobody():
    votes = simulated_votes({"a": 0.0, "b": 1.0}, 60, random.Random(1))
    assert preference_stats.ratings(votes, seed=3) == preference_stats.ratings(votes, seed=3)
    assert preference_stats.ratings([[("a", "b", 0.5)]] * 5) == []


def test_win_rate_matrix_counts_ties_half():
    items = vote_on_items({"alice": ["A", "B", "tie", "A"]}, sources=("base", "tuned"))
    table = preference_stats.win_rates(items)
    assert table["sources"] == ["base", "tuned"]
    base_wins = sum(
        1.0 if (lb.choice in ("A", "B") and it.responses["AB".index(lb.choice)].source == "base") else 0.0
        for it in items
        for lb in it.labels
    )
    assert table["comparisons"] == [[0, 4], [4, 0]]
    assert table["win_rate"][0][1] == pytest.approx((base_wins + 0.5) / 4)
    assert table["win_rate"][0][1] + table["win_rate"][1][0] == pytest.approx(1.0)


def test_prefs_stats_json_contract(capsys):
    from pipelines.cli import main

    vote_on_items({"alice": ["A", "A", "B", "A"], "bob": ["A", "B", "B", None]})
    assert main(["prefs", "stats", "--rounds", "50", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == 7 and report["items"] == 4
    assert report["annotators"] == [{"name": "alice", "labels": 4}, {"name": "bob", "labels": 3}]
    assert report["agreement"]["raw"] == pytest.approx(2 / 3) and "krippendorff_alpha" in report["agreement"]
    (first, second) = report["leaderboard"]
    assert {"source", "rating", "ci_low", "ci_high", "comparisons"} <= set(first)
    assert first["ci_low"] <= first["rating"] <= first["ci_high"] and first["comparisons"] == 7
    assert main(["prefs", "stats", "--rounds", "-1"]) == 2
    assert "--rounds" in capsys.readouterr().err
