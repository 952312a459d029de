"""Conversations through the chat template, trimming, import/export."""

from __future__ import annotations

import json

import pytest

from pipelines.engine import chat, models
from pipelines.engine.chat import Message
from pipelines.engine.sampling import InvalidParameter, SamplingParams
from tests.helpers import build_tiny_model

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Name three colours."},
]


@pytest.mark.parametrize("messages", [CONVERSATION, CONVERSATION[1:], CONVERSATION[:2]])
def test_rendering_is_exactly_the_tokenizer_template(tiny_handle, messages):
    text, ids = chat.render(tiny_handle, chat.normalise(messages))
    expected = tiny_handle.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == expected
    assert ids == tiny_handle.tokenizer(expected, add_special_tokens=False)["input_ids"]


def test_default_system_prompt_comes_from_the_template(tokenizer):
    assert (
        chat.default_system_prompt(tokenizer) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    )


def test_system_prompt_argument_replaces_the_leading_one(tiny_handle):
    prompt = chat.build_prompt(tiny_handle, chat.normalise(CONVERSATION), system_prompt="Be a pirate.")
    assert prompt.messages[0] == Message("system", "Be a pirate.") and "You are terse." not in prompt.text


def test_content_blocks_are_flattened():
    messages = chat.normalise(
        [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    )
    assert messages == [Message("user", "ab")]


@pytest.mark.parametrize(
    "bad",
    [
        "not a list",
        [{"role": "wizard", "content": "x"}],
        [{"role": "user", "content": 42}],
        [["user", "hi"]],
    ],
)
def test_bad_messages_are_refused_clearly(bad):
    with pytest.raises(InvalidParameter) as info:
        chat.normalise(bad)
    assert info.value.param == "messages"


def test_conversation_must_end_with_the_user(tiny_handle):
    with pytest.raises(InvalidParameter, match="end with a user message"):
        chat.build_prompt(tiny_handle, chat.normalise(CONVERSATION[:3]))


@pytest.fixture(scope="module")
def small_window(tokenizer):
    return models.wrap(build_tiny_model(tokenizer, max_positions=256), tokenizer, name="tiny-256")


def long_history(turns: int, words: int) -> list[dict]:
    history = [{"role": "system", "content": "Keep answers short."}]
    for i in range(turns):
        history.append({"role": "user", "content": f"question {i} " + "lorem ipsum " * (words // 2)})
        history.append({"role": "assistant", "content": f"answer {i} " + "dolor sit " * (words // 2)})
    history.append({"role": "user", "content": "And finally: what is two plus two?"})
    return history


def test_trimming_drops_oldest_turns_keeps_system_and_latest(small_window):
    prompt = chat.build_prompt(small_window, chat.normalise(long_history(12, 20)), max_new_tokens=32)
    assert prompt.dropped_turns > 0 and prompt.prompt_tokens <= 256 - 32
    assert prompt.messages[0] == Message("system", "Keep answers short.")
    assert prompt.messages[-1].content == "And finally: what is two plus two?"
    # the fewest turns were dropped: keeping one more would not fit
    assert "question 11" in prompt.text
    assert f"question {prompt.dropped_turns - 1} " not in prompt.text
    assert f"question {prompt.dropped_turns} " in prompt.text
    assert "dropped" in prompt.notice()


def test_huge_history_is_answered_not_refused(small_window):
    history = long_history(200, 30)  # ~6,000 words
    completion, prompt = chat.reply(
        small_window, chat.normalise(history), SamplingParams(temperature=0, max_new_tokens=8)
    )
    assert completion.finish_reason in {"length", "eos"} and prompt.dropped_turns >= 195


def test_single_oversized_message_keeps_its_end(small_window):
    message = "filler " * 3000 + "What is the final question?"
    prompt = chat.build_prompt(small_window, chat.normalise([{"role": "user", "content": message}]), max_new_tokens=16)
    assert prompt.truncated_chars > 0 and prompt.prompt_tokens <= 256 - 16
    assert prompt.messages[-1].content.endswith("What is the final question?")
    assert prompt.messages[-1].content.startswith(chat.TRUNCATION_MARK)


def test_export_import_round_trip():
    messages = chat.normalise(CONVERSATION[1:])
    text = chat.export_json(messages, system_prompt="Sys")
    data = json.loads(text)
    assert data[0] == {"role": "system", "content": "Sys"} and data[1:] == CONVERSATION[1:]
    assert chat.import_json(text) == [Message("system", "Sys"), *messages]
    assert chat.import_json(json.dumps({"messages": CONVERSATION})) == chat.normalise(CONVERSATION)


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe\x00", b'{"a": 1}', b'[{"role": "x"}]'])
def test_import_rejects_bad_files(payload):
    with pytest.raises(InvalidParameter, match="messages"):
        chat.import_json(payload)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'[{"role": "user"}]', "message 0 [(]user[)] has no content"),
        (
            b'[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": null}]',
            "message 1 [(]assistant[)] has no content",
        ),
        (
            b'[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  "}]',
            "message 1 [(]user[)] is empty",
        ),
    ],
)
def test_import_names_the_message_without_content(payload, reason):
    with pytest.raises(InvalidParameter, match=reason):
        chat.import_json(payload)
    assert (
        chat.import_json(b'[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]')[1].content == ""
    )
