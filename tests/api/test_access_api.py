"""Access control through gradio_client against a launched app with PLAYGROUND_AUTH and PLAYGROUND_ADMINS.

Every check is made on the server: a non-admin calling a named endpoint directly is refused
exactly as in the UI, and nothing is changed by the refused call.
"""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client

from pipelines import access
from pipelines.labels import preferences
from pipelines.store import db
from tests.helpers import as_public_space, launched_app, write_sft_rows

pytestmark = pytest.mark.api

USERS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture
def auth_url(use_tiny, monkeypatch):
    import app as app_module

    monkeypatch.setenv("PLAYGROUND_AUTH", ",".join(f"{u}:{p}" for u, p in USERS.items()))
    monkeypatch.setenv("PLAYGROUND_ADMINS", "alice")
    access.reset_policy()
    check = app_module.launch_kwargs()["auth"]
    assert callable(check) and check("bob", USERS["bob"]) and not check("bob", "nope")
    access.reset_policy()  # forget that failed try
    with launched_app(use_tiny) as url:
        yield url
    db.dispose_all()


def _item() -> str:
    return preferences.create_item(
        [{"role": "user", "content": "Say hi."}], [preferences.ResponseDraft("hi"), preferences.ResponseDraft("hello")]
    ).id


def test_anonymous_callers_are_turned_away(auth_url):
    item = _item()
    with pytest.raises(ValueError):  # gradio_client: no config without signing in
        Client(auth_url, verbose=False)
    response = httpx.post(
        f"{auth_url.rstrip('/')}/gradio_api/call/vote", json={"data": [item, "A", "mallory"]}, timeout=10
    )
    assert response.status_code in (401, 403)
    with pytest.raises(ValueError, match="Could not login"):
        Client(auth_url, auth=("bob", "wrong"), verbose=False)
    assert preferences.get_item(item).labels == []


def test_a_signed_in_labeller_votes_under_their_own_name(auth_url):
    item = _item()
    bob = Client(auth_url, auth=("bob", USERS["bob"]), verbose=False)
    assert bob.predict(item_id=item, choice="A", annotator="mallory", api_name="/vote")["created"]
    assert [label.annotator for label in preferences.get_item(item).labels] == ["bob"]


def test_non_admins_cannot_train_delete_or_export(auth_url, tmp_path):
    from gradio_client import handle_file

    from pipelines.store import jobs

    item = _item()
    bob = Client(auth_url, auth=("bob", USERS["bob"]), verbose=False)
    with pytest.raises(Exception, match="Only admins may delete data"):
        bob.predict(item_id=item, api_name="/delete_item")
    assert preferences.get_item(item).id == item
    with pytest.raises(Exception, match="Only admins may export"):
        bob.predict(fmt="jsonl", api_name="/export_preferences")
    data = write_sft_rows(tmp_path / "rows.jsonl")
    with pytest.raises(Exception, match="Only admins may start training"):
        bob.predict(
            upload=handle_file(str(data)),
            sample=None,
            skip_bad_rows=False,
            method="lora",
            lora_r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            target_modules=["q_proj"],
            num_virtual_tokens=8,
            learning_rate=None,
            epochs=1,
            max_steps=1,
            batch_size=2,
            grad_accum=1,
            max_length=64,
            gradient_checkpointing=False,
            seed=0,
            qlora=False,
            out="sneaky",
            overwrite=False,
            api_name="/start_finetune",
        )
    assert jobs.list_jobs() == []


def test_admins_can_delete_and_export(auth_url):
    item = _item()
    alice = Client(auth_url, auth=("alice", USERS["alice"]), verbose=False)
    assert str(alice.predict(fmt="jsonl", api_name="/export_preferences")).endswith(".jsonl")
    assert alice.predict(item_id=item, api_name="/delete_item").startswith("Deleted item")
    with pytest.raises(preferences.PreferenceError):
        preferences.get_item(item)


def test_failed_sign_ins_are_throttled_per_name_and_per_address(auth_url, monkeypatch):
    """40 wrong passwords in a burst used to be answered at full speed, and the right one then worked.

    Issue 35 (M5): spraying names from an address must never lock out a correct password -- a
    classroom shares one NAT address, and behind a Space's proxy every visitor did."""
    monkeypatch.setattr(access, "_throttle", access.LoginThrottle(base=30.0))  # locks that outlast the test's requests
    login = f"{auth_url.rstrip('/')}/login"
    answers = [httpx.post(login, data={"username": "alice", "password": f"guess-{i}"}, timeout=10) for i in range(40)]
    assert all(a.status_code == 400 for a in answers)
    assert all("Incorrect" in a.json()["detail"] for a in answers[:5])  # five free tries
    throttled = [a for a in answers[5:] if "Too many failed sign-ins" in a.json()["detail"]]
    assert len(throttled) == 34 and int(throttled[-1].headers["Retry-After"]) >= 25
    right = httpx.post(login, data={"username": "alice", "password": USERS["alice"]}, timeout=10)
    assert right.status_code == 400 and "Too many failed sign-ins" in right.json()["detail"]  # locked here
    bob = httpx.post(login, data={"username": "bob", "password": USERS["bob"]}, timeout=10)
    assert bob.status_code == 200
    for i in range(200):  # 200 names sprayed from one address: that address's failures are slowed ...
        httpx.post(login, data={"username": f"user{i}", "password": "x"}, timeout=10)
    again = [
        httpx.post(login, data={"username": f"user{i}", "password": f"y{j}"}, timeout=10)
        for i in range(3)
        for j in range(2)
    ]
    assert "Too many failed sign-ins" in again[-1].json()["detail"]  # a third password on a sprayed name waits
    late = httpx.post(login, data={"username": "bob", "password": USERS["bob"]}, timeout=10)
    assert late.status_code == 200  # ... but a correct password from it still signs in
    # the forwarded header is not the client's address unless the app is told it runs behind a proxy
    forged = httpx.post(
        login,
        data={"username": "alice", "password": USERS["alice"]},
        headers={"X-Forwarded-For": "1.2.3.4"},
        timeout=10,
    )
    assert forged.status_code == 400 and "Too many failed sign-ins" in forged.json()["detail"]


def test_on_a_public_space_anonymous_api_callers_are_read_only(use_tiny, monkeypatch):
    """`hf_oauth: true` (OAUTH_CLIENT_ID): the page is public, so the server itself must refuse changes."""
    as_public_space(monkeypatch)
    with launched_app(use_tiny) as url:
        visitor = Client(url, verbose=False)
        assert (
            visitor.predict(prompt="Hello", max_new_tokens=3, api_name="/generate")[0] is not None
        )  # generating is open
        for endpoint, arguments in (
            ("/rag_create", dict(name="mine", chunk_size=200, overlap=40)),
            ("/upload_prompt_set", dict(file=None, name="x")),
        ):
            with pytest.raises(Exception, match="Sign in"):
                visitor.predict(api_name=endpoint, **arguments)
        item = _item()
        with pytest.raises(Exception, match="Sign in to label"):
            visitor.predict(item_id=item, choice="A", annotator="mallory", api_name="/vote")
        assert preferences.get_item(item).labels == []
    db.dispose_all()
