"""Anonymous visitors on a public Space, through the real app: identities the server makes, sessions
nobody else can use, aliases instead of ids, and caps that keep one person from posing as many.

Issue 35 (M1-M3): anonymous labels were recorded as `anon:<session_hash>`; `/drives_view`,
`/preference_stats` and `/drive_next` listed those ids; reusing one, a second client voted as the
first and received its live generation stream; 200 sessions held 200 places of a drive; an
anonymous "Type a prompt" item reached a signed-in annotator's queue.
"""

from __future__ import annotations

import json

import httpx
import pytest
from gradio_client import Client

from pipelines import access
from pipelines.labels import drives, preferences
from pipelines.store import db
from tests.helpers import as_public_space, launched_app, two_response_items

pytestmark = pytest.mark.api


@pytest.fixture
def public_space(use_tiny, monkeypatch):
    """A Space with `hf_oauth: true` and PLAYGROUND_ANONYMOUS_LABELS=1, with small caps per address."""
    monkeypatch.setenv("PLAYGROUND_ANON_HOLDS_PER_ADDRESS", "3")
    monkeypatch.setenv("PLAYGROUND_ANON_VISITORS_PER_HOUR", "5")
    as_public_space(monkeypatch, anonymous_labels=True)
    with launched_app(use_tiny) as url:
        yield url.rstrip("/")
    db.dispose_all()


def _drive(name: str, items: int, overlap: int = 1) -> list[str]:
    drives.save(name, drives.DriveSettings(overlap=overlap, gold_rate=0.0))
    ids = two_response_items(items)
    drives.add_items(name, ids)
    return ids


def test_a_leaked_session_id_gives_another_client_no_stream_and_no_vote(public_space):
    ids = _drive("public", 4)
    victim = Client(public_space, verbose=False)
    mine = victim.predict(drive="public", annotator="", api_name="/drive_next")["item_id"]
    assert mine in ids
    attacker = httpx.Client(base_url=public_space, timeout=30)
    attacker.get("/config")
    job = victim.submit(prompt="Once upon a time", max_new_tokens=24, api_name="/generate")
    stolen = attacker.get("/gradio_api/queue/data", params={"session_hash": victim.session_hash})
    assert stolen.status_code == 403 and "another visitor" in stolen.json()["detail"]
    info = attacker.get("/gradio_api/info").json()["named_endpoints"]
    assert "/vote" in info
    as_victim = attacker.post(
        "/gradio_api/call/vote", json={"data": [mine, "A", "", "", ""], "session_hash": victim.session_hash}
    )
    assert as_victim.status_code == 403
    assert attacker.get(f"/gradio_api/heartbeat/{victim.session_hash}").status_code == 403
    assert job.result()[0]  # the victim's own stream arrived whole
    assert victim.predict(item_id=mine, choice="A", annotator="", api_name="/vote")["created"]
    [label] = preferences.get_item(mine).labels
    assert label.annotator.startswith("anon:") and victim.session_hash not in label.annotator


def test_no_page_or_endpoint_lists_visitor_ids(public_space):
    _drive("public", 3)
    visitor = Client(public_space, verbose=False)
    found = visitor.predict(drive="public", annotator="", api_name="/drive_next")
    visitor.predict(item_id=found["item_id"], choice="B", annotator="", api_name="/vote")
    stored = preferences.get_item(found["item_id"]).labels[0].annotator
    assert "annotators" not in found["progress"] and found["progress"]["annotator_count"] >= 1
    shown = json.dumps(
        [
            visitor.predict(api_name="/drives_view"),
            visitor.predict(api_name="/preference_stats"),
            visitor.predict(drive="public", annotator="", api_name="/drive_next"),
        ],
        default=str,
    )
    assert visitor.session_hash not in shown and stored not in shown
    assert access.alias(stored) in shown  # an alias says "someone labelled" without being usable
    assert "gold right" not in shown  # accuracy on gold items is the operator's alone


def test_one_person_cannot_pose_as_many_anonymous_annotators(public_space):
    _drive("public", 10, overlap=2)
    held, refusals = [], []
    for _ in range(8):  # eight "visitors" from one address, each a fresh client (a fresh cookie)
        try:
            held.append(
                Client(public_space, verbose=False).predict(drive="public", annotator="", api_name="/drive_next")
            )
        except Exception as error:  # noqa: BLE001 - the refusal arrives as the client's exception
            refusals.append(str(error))
    assert len(held) == 3, refusals  # PLAYGROUND_ANON_HOLDS_PER_ADDRESS=3
    assert all("held by visitors from your network" in r for r in refusals)
    # one visitor labels an item; a second identity from the same address is never served it
    item = held[0]["item_id"]
    assert item not in {h["item_id"] for h in held[1:]}


def test_anonymous_visitors_label_drive_items_only(public_space):
    stray = preferences.create_item(
        [{"role": "user", "content": "Hi"}], [preferences.ResponseDraft("a"), preferences.ResponseDraft("b")]
    ).id
    visitor = Client(public_space, verbose=False)
    with pytest.raises(Exception, match="Sign in to label items outside a label drive"):
        visitor.predict(item_id=stray, choice="A", annotator="", api_name="/vote")
    with pytest.raises(Exception, match="Sign in to create items to label"):
        visitor.predict(
            mode="Type a prompt",
            prompt="buy cheap pills",
            prompt_set=None,
            n_responses=2,
            annotator="",
            api_name="/new_item",
        )
    assert [i.id for i in preferences.list_items()] == [stray] and preferences.get_item(stray).labels == []
