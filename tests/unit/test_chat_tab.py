"""Chat tab handlers as plain Python."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import pytest

from playground import chat as chat_tab
from tests.helpers import SAMPLING_DEFAULTS as DEFAULTS
from tests.refusals import REFUSED


def last(gen):
    return list(gen)[-1]


def send(message, history, system="", **overrides):
    """The Send chain as the browser runs it: take the message, then stream the answer."""
    box, history, busy, send_button, regenerate_button, run_id = chat_tab.take_message(message, history, False)
    assert box == "" and busy is True and run_id
    assert send_button["interactive"] is False and regenerate_button["interactive"] is False
    return last(chat_tab.answer(history, system, None, run_id, **{**DEFAULTS, **overrides}))


def test_send_streams_and_shows_the_prompt(use_tiny):
    history, rendered, report, capsule = send("Hi there", [], "Be brief.")
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in rendered and rendered.endswith("<|im_start|>assistant\n")
    assert "context tokens" in report
    assert capsule["kind"] == "chat" and capsule["inputs"]["system_prompt"] == "Be brief."  # for Save capsule


def test_a_reply_saved_as_a_capsule_replays_and_loads_back(use_tiny, tmp_path):
    """Issue 43: a chat turn made in the page is saved as a capsule that `replay` makes again token for token,
    and loading it puts back the conversation up to the message answered, the system prompt and the seed."""
    from pipelines.replay import replay

    history, *_ = send("First", [], "Sys", temperature=0.9, seed=-1)  # a fresh seed: the one used is recorded
    history, _, _, capsule = send("Second", history, "Sys", temperature=0.9, seed=-1)
    answer = replay.replay(capsule)
    assert answer["match"] is True and answer["replayed"]["text"] == history[-1]["content"]
    path = chat_tab.capsule_files.saved(capsule, "reply")
    conversation, system, *settings, adapter, note = chat_tab.load_capsule_file(path)
    assert [m["content"] for m in conversation] == ["First", history[1]["content"], "Second"]
    assert system["value"] == "Sys" and f"seed {capsule['inputs']['sampler']['params']['seed']}" in note
    again = last(
        chat_tab.answer(
            conversation,
            system["value"],
            None,
            **{**DEFAULTS, "temperature": 0.9, "seed": capsule["inputs"]["sampler"]["params"]["seed"]},
        )
    )
    assert again[0][-1]["content"] == history[-1]["content"]  # Regenerate with the loaded settings: the same reply
    with pytest.raises(gr.Error, match="Nothing to save yet"):
        chat_tab.capsule_files.saved(None, "reply")
    from pipelines.replay import capsules

    generated = tmp_path / "g.json"
    generated.write_text(json.dumps(capsules.seal({**capsule, "kind": "generate"})))
    with pytest.raises(gr.Error, match="the Chat tab loads chat capsules"):
        chat_tab.load_capsule_file(str(generated))
    generated.write_text(json.dumps({**capsule, "kind": "generate"}))
    with pytest.raises(capsules.CapsuleError, match="changed after it was made"):
        chat_tab.load_capsule_file(str(generated))


def test_two_turns_regenerate_undo_edit(use_tiny):
    history, *_ = send("First", [])
    history, *_ = send("Second", history)
    assert [m["content"] for m in history if m["role"] == "user"] == ["First", "Second"]
    assert chat_tab.claim(False)[0] is True
    again, rendered, *_ = last(chat_tab.answer(history, "", None, **{**DEFAULTS, "temperature": 1.0, "seed": 5}))
    assert len(again) == 4 and again[:3] == history[:3]
    before, text = chat_tab.undo(history)
    assert text == "Second" and len(before) == 2
    edited, busy, *_ = chat_tab.apply_edit(history, False, SimpleNamespace(index=0, value="Changed"))
    assert edited == [{"role": "user", "content": "Changed"}] and busy
    answered, rendered, *_ = last(chat_tab.answer(edited, "", None, **DEFAULTS))
    assert len(answered) == 2 and "Changed" in rendered


def test_one_reply_at_a_time_and_nothing_typed_is_lost(use_tiny):
    with pytest.raises(REFUSED, match="still being written"):
        chat_tab.take_message("typed while streaming", [], True)  # the box keeps its text
    with pytest.raises(REFUSED, match="still being written"):
        chat_tab.claim(True)
    with pytest.raises(REFUSED, match="still being written"):
        chat_tab.undo([{"role": "user", "content": "x"}], True)
    released, send_button, regenerate_button = chat_tab.release()
    assert released is False and send_button["interactive"] is True and regenerate_button["interactive"] is True


def test_stop_ends_the_reply_itself_and_one_never_started_is_freed_at_once(use_tiny):
    *_, run_id = chat_tab.take_message("Tell me a long story", [], False)
    history = [{"role": "user", "content": "Tell me a long story"}]
    stream = chat_tab.answer(
        history, "", None, run_id, **{**DEFAULTS, "max_new_tokens": 200, "temperature": 1.0, "seed": 7}
    )
    first, *_ = next(stream)
    assert chat_tab.stop_reply(run_id) == (gr.skip(), gr.skip(), gr.skip())  # streaming: it frees itself when it ends
    rest = list(stream)
    assert len(rest) == 1  # one last update with what it had, then the stream ended on its own
    assert rest[0][0][-1]["role"] == "assistant"

    *_, queued = chat_tab.claim(False)
    released = chat_tab.stop_reply(queued)  # pressed while the reply waited for its turn
    assert released[0] is False and released[1]["interactive"] is True
    shown = list(chat_tab.answer(history, "", None, queued, **DEFAULTS))
    assert len(shown) == 1 and shown[0][0] == history  # it ends before showing anything


def test_gradio_content_blocks_are_accepted(use_tiny):
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yo"}]},
    ]
    out, *_ = send("More", history)
    assert out[0]["content"] == "Hi" and out[2]["content"] == "More"


def test_empty_and_nothing_to_undo_are_clear_errors(use_tiny):
    with pytest.raises(REFUSED, match="Type a message"):
        chat_tab.take_message("   ", [], False)
    with pytest.raises(REFUSED, match="no user message"):
        chat_tab.undo([])
    with pytest.raises(REFUSED, match="empty"):
        chat_tab.chat_api("")


def test_chat_api_holds_a_conversation(use_tiny):
    first = chat_tab.chat_api("Hello", [], "Be brief.", max_new_tokens=5, temperature=0)
    second = chat_tab.chat_api("Again", first["history"], "Be brief.", max_new_tokens=5, temperature=0)
    assert [m["role"] for m in second["history"]] == ["user", "assistant"] * 2
    assert second["history"][-1]["content"] == second["reply"] and second["prompt_tokens"] > first["prompt_tokens"]
    with pytest.raises(REFUSED, match="top_p"):
        chat_tab.chat_api("Hi", top_p=2.0)


def test_export_then_import_continues_the_conversation(use_tiny, tmp_path):
    history, *_ = send("Remember me", [], "Sys")
    path = chat_tab.export_conversation(history, "Sys")
    data = json.loads(open(path, encoding="utf-8").read())
    assert data[0] == {"role": "system", "content": "Sys"} and data[1]["content"] == "Remember me"
    restored, system = chat_tab.import_conversation(path)
    assert restored == [{"role": m["role"], "content": m["content"]} for m in history] and system == "Sys"
    assert history[-1]["metadata"] == {
        "log": "tiny-llama (base)"
    }  # who wrote the reply (not exported: OpenAI's format)


def test_each_reply_says_which_model_and_adapter_wrote_it(use_tiny):
    """Issue 42: Chat did not show which model or adapter wrote each reply; the authors survive later turns."""
    history, _, report, _ = send("First", [], "")
    assert "**Written by** (reply: model + adapter): 1 tiny-llama (base)" in report
    history, _, report, _ = send("Second", history, "")
    assert "1 tiny-llama (base) · 2 tiny-llama (base)" in report
    assert [m.get("metadata") for m in history if m["role"] == "assistant"] == [{"log": "tiny-llama (base)"}] * 2


def test_a_failed_send_gives_the_message_back(use_tiny):
    """Issue 42, W4: a send that failed left the user message without a reply and emptied the box; resending
    made two user turns in a row. The message goes back in the box and leaves the conversation."""
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    failed = history + [{"role": "user", "content": "Tell me more"}]
    assert chat_tab.give_back(failed, "") == (history, "Tell me more")
    kept = chat_tab.give_back(failed, "a new draft")  # something typed since is never overwritten
    assert kept == (chat_tab.gr.skip(), chat_tab.gr.skip())
    assert chat_tab.give_back(history, "") == (chat_tab.gr.skip(), chat_tab.gr.skip())  # a reply began: kept


@pytest.mark.parametrize("content", [b"{broken", b"\xff\xfe", b'{"x": 1}', b'[{"role": "robot", "content": "x"}]'])
def test_bad_import_files_are_explained(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(REFUSED, match="Could not import bad.json"):
        chat_tab.import_conversation(str(path))


def test_preview_shows_the_template_for_a_draft(use_tiny):
    rendered, report = chat_tab.preview([], "draft question", "Sys", 64)
    assert "draft question" in rendered and "of **512** context tokens" in report
