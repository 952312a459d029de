"""Chat through gradio_client: a two-turn conversation, and sessions that never mix."""

from __future__ import annotations

import pytest
from gradio_client import Client

pytestmark = pytest.mark.api


def test_two_turn_conversation(app_url):
    client = Client(app_url, verbose=False)
    first = client.predict(
        message="Hello", history=[], system_prompt="Be brief.", temperature=0, max_new_tokens=6, api_name="/chat"
    )
    assert [m["role"] for m in first["history"]] == ["user", "assistant"] and first["reply"] == first["history"][-1][
        "content"
    ]
    second = client.predict(
        message="And again",
        history=first["history"],
        system_prompt="Be brief.",
        temperature=0,
        max_new_tokens=6,
        api_name="/chat",
    )
    assert [m["content"] for m in second["history"] if m["role"] == "user"] == ["Hello", "And again"]
    assert second["prompt_tokens"] > first["prompt_tokens"] and second["dropped_turns"] == 0
    as_chatbot = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in second["history"]]
    rendered, report = client.predict(
        history=as_chatbot, draft="third", system_prompt="Be brief.", max_new_tokens=6, api_name="/chat_prompt"
    )
    assert rendered.count("<|im_start|>user") == 3 and "Be brief." in rendered
    undone, text = client.predict(history=as_chatbot, api_name="/undo")
    assert text == "And again" and len(undone) == 2


def test_two_sessions_do_not_share_a_conversation(app_url):
    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    a = alice.predict(message="I am Alice", history=[], max_new_tokens=4, api_name="/chat")
    b = bob.predict(message="I am Bob", history=[], max_new_tokens=4, api_name="/chat")
    assert "Bob" not in str(a["history"]) and "Alice" not in str(b["history"])


def test_chat_bad_input_is_a_message(app_url):
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="empty"):
        client.predict(message="", history=[], api_name="/chat")
    with pytest.raises(Exception, match="role"):
        client.predict(message="Hi", history=[{"role": "wizard", "content": "x"}], api_name="/chat")
