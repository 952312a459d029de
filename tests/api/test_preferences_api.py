"""Preferences through gradio_client: generate an item, vote, read the dataset."""

from __future__ import annotations

import pytest
from gradio_client import Client

from pipelines.store import db

pytestmark = pytest.mark.api


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


def test_item_vote_and_stats_over_the_api(client):
    out = client.predict(
        mode="Type a prompt",
        prompt="Say hi.",
        prompt_set=None,
        n_responses=2,
        annotator="api-user",
        max_new_tokens=4,
        api_name="/new_item",
    )
    item_id = out[0]
    assert len(item_id) == 12 and out[1] == "**user:** Say hi."
    first = client.predict(item_id=item_id, choice="B", annotator="api-user", api_name="/vote")
    again = client.predict(item_id=item_id, choice="B", annotator="api-user", api_name="/vote")
    assert first["created"] and not again["created"] and first["ranking"] == [[1], [0]]
    with pytest.raises(Exception, match="already voted"):
        client.predict(item_id=item_id, choice="A", annotator="api-user", api_name="/vote")
    summary, annotators, board, forest, wins, pairs, recent = client.predict(api_name="/preference_stats")
    assert "**1** items, **1** labels" in summary
    three = client.predict(
        mode="Type a prompt",
        prompt="Say hi.",
        prompt_set=None,
        n_responses=3,
        annotator="api-user",
        max_new_tokens=4,
        api_name="/new_item",
    )[0]
    outputs = client.predict(
        item_id=three, ranking="C > A = B", rationale="", annotator="api-user", api_name="/vote_ranking"
    )
    assert "C > A = B" in outputs[-2]  # the reveal; the last output is a drive's progress (none here)
    db.dispose_all()


def test_anonymous_votes_are_refused(client):
    with pytest.raises(Exception, match="your name"):
        client.predict(item_id="x", choice="A", annotator="", api_name="/vote")
