"""With sign-in on (here Hugging Face OAuth, as on a public Space), visitors who are not signed in are read-only.

Issue 17 found anonymous visitors creating and filling RAG collections, re-indexing them, adding
prompt sets and queueing items for everyone. Each handler is called as the server calls it: with a
request that carries no signed-in user.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pipelines import access
from pipelines.labels import preferences
from pipelines.rag import store
from tests.refusals import REFUSED


def _anonymous(visitor: str = "visitor-1") -> SimpleNamespace:
    """A request as the visitors middleware passes it on: its visitor id in a signed header."""
    token = access.visitor_keys().token(visitor)
    return SimpleNamespace(
        username=None, session={}, session_hash=f"s-{visitor}", headers={access.VISITOR_HEADER: token}, client=None
    )


class _Anonymous:  # built lazily: the key lives in each test's data directory
    def __getattr__(self, name):
        return getattr(_anonymous(), name)


ANONYMOUS = _Anonymous()


def _user(name: str) -> SimpleNamespace:
    return SimpleNamespace(
        username=None, session={"oauth_info": {"userinfo": {"preferred_username": name}}}, session_hash=f"s-{name}"
    )


@pytest.fixture
def public_space(monkeypatch, use_tiny):
    monkeypatch.setenv("OAUTH_CLIENT_ID", "space-client")
    monkeypatch.setenv("PLAYGROUND_ADMINS", "operator")
    access.reset_policy()
    assert access.get_policy().sign_in


def _refused(call, what: str) -> None:
    with pytest.raises(REFUSED, match=f"Sign in to {what}"):
        result = call()
        if hasattr(result, "__next__"):  # a streaming handler refuses on its first step
            next(result)


def test_anonymous_visitors_cannot_create_upload_index_queue_or_label(public_space, tmp_path, data_dir):
    from playground import align, chat, rag, reasoning
    from playground import label as prefs_tab

    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nThe orchard has forty apple trees.\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    store.create("existing")

    _refused(lambda: rag.create_collection("mine", 200, 40, request=ANONYMOUS), "create collections")
    _refused(lambda: rag.ingest_files("existing", [str(doc)], request=ANONYMOUS), "upload documents")
    _refused(lambda: rag.reindex_collection("existing", request=ANONYMOUS), "re-index collections")
    _refused(lambda: prefs_tab.upload_prompt_set(str(prompts), "set", request=ANONYMOUS), "add prompt sets")
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    _refused(lambda: chat.send_to_compare(history, "", None, "", request=ANONYMOUS), "queue comparisons")
    _refused(
        lambda: align.queue_for_humans("x", align.PROMPT_SOURCES[1], None, 1, 8, request=ANONYMOUS), "queue comparisons"
    )
    _refused(
        lambda: reasoning.run_benchmark("Bundled problems", None, 1, ["direct"], 1, request=ANONYMOUS),
        "run and save benchmarks",
    )
    item = preferences.create_item(
        [{"role": "user", "content": "Hi"}], [preferences.ResponseDraft("a"), preferences.ResponseDraft("b")]
    )
    _refused(lambda: prefs_tab.vote_api(item.id, "A", "typed", request=ANONYMOUS), "label")
    assert (
        store.load("existing").documents == []
        and preferences.prompt_sets() == {}
        and preferences.get_item(item.id).labels == []
    )
    assert store.collection_names() == ["existing"] and len(preferences.list_items()) == 1


def test_a_public_label_drive_opens_labelling_of_its_items_alone_under_a_server_made_id(public_space, monkeypatch):
    from pipelines.labels import drives
    from playground import chat, rag
    from playground import label as prefs_tab

    monkeypatch.setenv("PLAYGROUND_ANONYMOUS_LABELS", "1")
    access.reset_policy()
    drives.save("public", drives.DriveSettings(gold_rate=0.0))
    item = preferences.create_item(
        [{"role": "user", "content": "Hi"}], [preferences.ResponseDraft("a"), preferences.ResponseDraft("b")]
    )
    drives.add_items("public", [item.id])
    assert prefs_tab.drive_next("public", "someone-else", request=_anonymous())["item_id"] == item.id
    assert prefs_tab.vote_api(item.id, "B", "someone-else", request=_anonymous())["created"]
    [label] = preferences.get_item(item.id).labels
    assert label.annotator == access.visitor_keys().stored_id("visitor-1")  # not the typed name, not the session
    assert "visitor-1" not in label.annotator
    forged = _anonymous()
    forged.headers = {access.VISITOR_HEADER: "visitor-1.deadbeef"}  # a header the middleware did not sign
    with pytest.raises(REFUSED, match="needs a browser session"):
        prefs_tab.drive_next("public", "", request=forged)
    _refused(lambda: rag.create_collection("mine", 200, 40, request=ANONYMOUS), "create collections")

    # issue 35, M3: only the drive's items -- nothing a visitor writes reaches the store
    stray = preferences.create_item(
        [{"role": "user", "content": "Hi"}], [preferences.ResponseDraft("c"), preferences.ResponseDraft("d")]
    )
    _refused(lambda: prefs_tab.vote_api(stray.id, "A", "", request=ANONYMOUS), "label items outside a label drive")
    for mode in prefs_tab.MODES[:2]:
        _refused(
            lambda mode=mode: prefs_tab.new_item(mode, "buy cheap pills", "set", 2, "", request=ANONYMOUS),
            "create items to label",
        )
    _refused(
        lambda: prefs_tab.new_item(prefs_tab.MODES[2], "", None, 2, "", request=ANONYMOUS),
        "label items outside a label drive",
    )
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "visitor-written reply"}]
    like = SimpleNamespace(index=1, liked=True)
    _refused(lambda: chat.feedback(history, "", "", like, request=ANONYMOUS), "rate replies")
    assert len(preferences.list_items()) == 2 and preferences.get_item(stray.id).labels == []


def test_signed_in_users_add_documents_and_remove_only_their_own(public_space, tmp_path):
    from playground import rag

    for name in ("alice.md", "bob.md"):
        (tmp_path / name).write_text(f"# {name}\n\nA note by {name}.\n")
    rag.create_collection("shared", 200, 40, request=_user("alice"))
    rag.ingest_files("shared", [str(tmp_path / "alice.md")], request=_user("alice"))
    rag.ingest_files("shared", [str(tmp_path / "bob.md")], request=_user("bob"))
    assert {d.name: d.added_by for d in store.load("shared").documents} == {"alice.md": "alice", "bob.md": "bob"}
    with pytest.raises(REFUSED, match="added by bob: only they or an admin"):
        rag.remove_document("shared", "bob.md", request=_user("alice"))
    rag.remove_document("shared", "alice.md", request=_user("alice"))
    rag.remove_document("shared", "bob.md", request=_user("operator"))
    assert store.load("shared").documents == []
