"""Access control through gradio_client against a launched app with PLAYGROUND_AUTH and PLAYGROUND_ADMINS.

Every check is made on the server: a non-admin calling a named endpoint directly is refused
exactly as in the UI, and nothing is changed by the refused call.
"""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client

from pipelines import access, db, preferences
from tests.conftest import free_port, write_sft_rows

pytestmark = pytest.mark.api

USERS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture
def auth_url(use_tiny, monkeypatch):
    import app as app_module

    monkeypatch.setenv("PLAYGROUND_AUTH", ",".join(f"{u}:{p}" for u, p in USERS.items()))
    monkeypatch.setenv("PLAYGROUND_ADMINS", "alice")
    access.reset_policy()
    demo = app_module.build_app(use_tiny.name)
    demo.queue(default_concurrency_limit=4)
    kwargs = app_module.launch_kwargs()
    assert kwargs["auth"] == sorted(USERS.items())
    kwargs.update(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    _, url, _ = demo.launch(**kwargs)
    yield url
    demo.close()
    db.dispose_all()


def _item() -> str:
    return preferences.create_item([{"role": "user", "content": "Say hi."}],
                                   [preferences.ResponseDraft("hi"), preferences.ResponseDraft("hello")]).id


def test_anonymous_callers_are_turned_away(auth_url):
    item = _item()
    with pytest.raises(Exception):
        Client(auth_url, verbose=False)
    response = httpx.post(f"{auth_url.rstrip('/')}/gradio_api/call/vote", json={"data": [item, "A", "mallory"]}, timeout=10)
    assert response.status_code in (401, 403)
    with pytest.raises(Exception):
        Client(auth_url, auth=("bob", "wrong"), verbose=False)
    assert preferences.get_item(item).labels == []


def test_a_signed_in_labeller_votes_under_their_own_name(auth_url):
    item = _item()
    bob = Client(auth_url, auth=("bob", USERS["bob"]), verbose=False)
    assert bob.predict(item_id=item, choice="A", annotator="mallory", api_name="/vote")["created"]
    assert [label.annotator for label in preferences.get_item(item).labels] == ["bob"]


def test_non_admins_cannot_train_delete_or_export(auth_url, tmp_path):
    from gradio_client import handle_file

    from pipelines import jobs

    item = _item()
    bob = Client(auth_url, auth=("bob", USERS["bob"]), verbose=False)
    with pytest.raises(Exception, match="Only admins may delete data"):
        bob.predict(item_id=item, api_name="/delete_item")
    assert preferences.get_item(item).id == item
    with pytest.raises(Exception, match="Only admins may export"):
        bob.predict(fmt="jsonl", api_name="/export_preferences")
    data = write_sft_rows(tmp_path / "rows.jsonl")
    with pytest.raises(Exception, match="Only admins may start training"):
        bob.predict(upload=handle_file(str(data)), sample=None, skip_bad_rows=False, method="lora", lora_r=4, lora_alpha=8,
                    lora_dropout=0.0, targets=["q_proj"], virtual_tokens=8, learning_rate=None, epochs=1, max_steps=1,
                    batch_size=2, grad_accum=1, max_length=64, gradient_checkpointing=False, seed=0, qlora=False,
                    name="sneaky", overwrite=False, api_name="/start_finetune")
    assert jobs.list_jobs() == []


def test_admins_can_delete_and_export(auth_url):
    item = _item()
    alice = Client(auth_url, auth=("alice", USERS["alice"]), verbose=False)
    assert str(alice.predict(fmt="jsonl", api_name="/export_preferences")).endswith(".jsonl")
    assert alice.predict(item_id=item, api_name="/delete_item").startswith("Deleted item")
    with pytest.raises(preferences.PreferenceError):
        preferences.get_item(item)
