"""With sign-in on (here Hugging Face OAuth, as on a public Space), visitors who are not signed in are read-only.

Issue 17 found anonymous visitors creating and filling RAG collections, re-indexing them, adding
prompt sets and queueing items for everyone. Each handler is called as the server calls it: with a
request that carries no signed-in user.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.refusals import REFUSED
from pipelines import access, preferences
from pipelines.rag import store

ANONYMOUS = SimpleNamespace(username=None, session={}, session_hash="visitor-1")


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
    from playground import align, chat, label as prefs_tab, rag, reasoning

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
        lambda: reasoning.run_benchmark("Bundled problems", None, 1, ["direct"], 1, "", "", "", request=ANONYMOUS),
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


def test_a_public_label_drive_opens_labelling_alone_under_an_anonymous_session_id(public_space, monkeypatch, tmp_path):
    from playground import label as prefs_tab, rag

    monkeypatch.setenv("PLAYGROUND_ANONYMOUS_LABELS", "1")
    access.reset_policy()
    item = preferences.create_item(
        [{"role": "user", "content": "Hi"}], [preferences.ResponseDraft("a"), preferences.ResponseDraft("b")]
    )
    assert prefs_tab.vote_api(item.id, "B", "someone-else", request=ANONYMOUS)["created"]
    assert [label.annotator for label in preferences.get_item(item.id).labels] == ["anon:visitor-1"]
    _refused(
        lambda: rag.create_collection("mine", 200, 40, request=ANONYMOUS), "create collections"
    )  # still read-only otherwise


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
