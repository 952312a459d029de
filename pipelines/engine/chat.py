"""Conversations: messages -> prompt through the tokenizer's chat template, trimmed to the window.

The prompt is only ever built by `tokenizer.apply_chat_template`; string concatenation would
silently diverge from the format the model was trained on. When a conversation no longer fits,
whole turns are dropped from the oldest end (the system prompt always stays) and the caller is
told how many -- a long chat is answered, never refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.engine import generation
from pipelines.engine.messages import (  # noqa: F401 - re-exported
    MAX_CONTENT_CHARS,
    MAX_MESSAGES,
    ROLES,
    ChatIds,
    Message,
    flatten_content,
    normalise,
    split_system,
)  # noqa: F401 - re-exported
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import InvalidParameter, SamplingParams

TRUNCATION_MARK = "[…] "


@lru_cache(maxsize=8)
def _default_system_prompt(template: str | None, tokenizer_id: int, tokenizer: Any) -> str | None:
    probe_user = "\x00USER\x00"
    probe_system = "\x00SYSTEM\x00"
    try:
        without = tokenizer.apply_chat_template(
            [{"role": "user", "content": probe_user}], tokenize=False, add_generation_prompt=False
        )
        with_system = tokenizer.apply_chat_template(
            [{"role": "system", "content": probe_system}, {"role": "user", "content": probe_user}],
            tokenize=False,
            add_generation_prompt=False,
        )
    except Exception:  # noqa: BLE001 - templates without system support raise all sorts of errors
        return None
    start = with_system.find(probe_system)
    if start < 0:
        return None
    prefix, suffix = with_system[:start], with_system[start + len(probe_system) : with_system.find(probe_user)]
    if not without.startswith(prefix):
        return None
    rest = without[len(prefix) :]
    end = rest.find(suffix) if suffix else -1
    if end <= 0 or probe_user in rest[:end]:
        return None
    return rest[:end]


def default_system_prompt(tokenizer: Any) -> str | None:
    """The system prompt the chat template inserts when none is given (SmolLM2 has one)."""
    return _default_system_prompt(getattr(tokenizer, "chat_template", None), id(tokenizer), tokenizer)


@dataclass
class ChatPrompt:
    messages: list[Message]  # what the model sees, after trimming
    text: str  # the rendered template
    ids: list[int]
    dropped_turns: int
    truncated_chars: int  # characters cut from the start of the newest message when even it alone was too long
    max_new_tokens: int
    context_window: int

    @property
    def prompt_tokens(self) -> int:
        return len(self.ids)

    def notice(self) -> str:
        parts = []
        if self.dropped_turns:
            parts.append(
                f"{self.dropped_turns} oldest turn{'s' if self.dropped_turns != 1 else ''} dropped to fit the "
                f"{self.context_window:,}-token context window"
            )
        if self.truncated_chars:
            parts.append(f"the start of the last message ({self.truncated_chars:,} characters) was cut to fit")
        return "; ".join(parts)


def render(handle: ModelHandle, messages: Sequence[Message]) -> tuple[str, list[int]]:
    payload = [m.to_json() for m in messages]
    text = handle.tokenizer.apply_chat_template(payload, tokenize=False, add_generation_prompt=True)
    ids = handle.tokenizer.apply_chat_template(payload, tokenize=True, add_generation_prompt=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return text, [int(i) for i in ids]


def _turns(messages: Sequence[Message]) -> list[list[Message]]:
    """Group into turns, each starting at a user message (leading replies join the first turn)."""
    turns: list[list[Message]] = []
    for message in messages:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def build_prompt(
    handle: ModelHandle,
    messages: Sequence[Message],
    *,
    system_prompt: str | None = None,
    max_new_tokens: int = 256,
) -> ChatPrompt:
    """Render the conversation for the model, dropping the oldest turns until it fits.

    `system_prompt` replaces a leading system message; None keeps it (or the template default).
    Room is reserved for the reply: `max_new_tokens`, but never more than half the window.
    """
    messages = normalise(messages)
    leading_system, conversation = split_system(messages)
    system = system_prompt if system_prompt is not None else leading_system
    if not conversation or conversation[-1].role != "user":
        raise InvalidParameter("messages", "the conversation must end with a user message")
    head = [Message("system", system)] if system else []
    window = handle.context_window
    reserve = max(1, min(max_new_tokens, window // 2))
    budget = window - reserve

    turns = _turns(conversation)

    def attempt(dropped: int) -> tuple[list[Message], str, list[int]]:
        kept = head + [m for turn in turns[dropped:] for m in turn]
        return (kept, *render(handle, kept))

    kept, text, ids = attempt(0)
    dropped = 0
    if len(ids) > budget:
        low, high = 1, len(turns) - 1  # find the fewest dropped turns that fit
        best = None
        while low <= high:
            mid = (low + high) // 2
            candidate = attempt(mid)
            if len(candidate[2]) <= budget:
                best, high = (mid, candidate), mid - 1
            else:
                low = mid + 1
        if best is None:
            dropped = len(turns) - 1
            kept, text, ids = attempt(dropped)
        else:
            dropped, (kept, text, ids) = best

    truncated = 0
    if len(ids) > budget:
        kept, text, ids, truncated = _truncate_last_message(handle, head, turns[-1], budget)
        if len(ids) > budget:
            raise InvalidParameter(
                "system_prompt", f"is too long: the system prompt alone leaves no room in the {window:,}-token window"
            )
    return ChatPrompt(
        messages=kept,
        text=text,
        ids=ChatIds(ids, kept),
        dropped_turns=dropped,
        truncated_chars=truncated,
        max_new_tokens=min(max_new_tokens, window - len(ids)),
        context_window=window,
    )


def _truncate_last_message(
    handle: ModelHandle, head: list[Message], last_turn: list[Message], budget: int
) -> tuple[list[Message], str, list[int], int]:
    """Keep the end of an over-long final user message (questions usually come last)."""
    message = last_turn[-1]
    token_ids = handle.tokenizer(message.content, add_special_tokens=False)["input_ids"]
    overhead = len(render(handle, head + [Message("user", "")])[1])
    keep = max(budget - overhead - 8, 1)
    for _ in range(4):  # token counts shift slightly at the cut; tighten until it fits
        tail = handle.tokenizer.decode(token_ids[-keep:], skip_special_tokens=True)
        kept = head + [Message("user", TRUNCATION_MARK + tail)]
        text, ids = render(handle, kept)
        if len(ids) <= budget:
            break
        keep = max(keep - (len(ids) - budget) - 8, 1)
    return kept, text, ids, max(0, len(message.content) - len(tail))


def stream_reply(
    handle: ModelHandle,
    messages: Sequence[Message],
    params: SamplingParams,
    *,
    system_prompt: str | None = None,
    adapter: str | None = None,
    should_stop: Any = None,
) -> Iterator[tuple[generation.Completion, ChatPrompt]]:
    """Stream the assistant's reply to a conversation that ends with a user message."""
    prompt = build_prompt(handle, messages, system_prompt=system_prompt, max_new_tokens=params.max_new_tokens)
    fitted = params if prompt.max_new_tokens == params.max_new_tokens else _with_max(params, prompt.max_new_tokens)
    for completion in generation.stream(handle, prompt.ids, fitted, adapter=adapter, should_stop=should_stop):
        yield completion, prompt


def reply(handle: ModelHandle, messages: Sequence[Message], params: SamplingParams, **kwargs: Any):
    """The finished reply and the prompt it answered."""
    result = None
    for result in stream_reply(handle, messages, params, **kwargs):  # noqa: B007 - a stream drained for its last value
        pass
    assert result is not None
    return result


def reply_json(completion: generation.Completion, prompt: ChatPrompt) -> dict[str, Any]:
    """A finished reply as `chat --json` prints it and agents receive it."""
    return {
        "role": "assistant",
        "content": completion.text,
        "prompt_tokens": prompt.prompt_tokens,
        "completion_tokens": len(completion.tokens),
        "dropped_turns": prompt.dropped_turns,
        "finish_reason": completion.finish_reason,
        "truncated_chars": prompt.truncated_chars,
        "seed": completion.seed,
    }


def _with_max(params: SamplingParams, max_new_tokens: int) -> SamplingParams:
    from dataclasses import replace

    return replace(params, max_new_tokens=max(1, max_new_tokens))


# --- import / export ------------------------------------------------------------------------


def export_json(messages: Sequence[Message], system_prompt: str | None = None) -> str:
    """The conversation as an OpenAI-style messages list (system message first, if any)."""
    out = [Message("system", system_prompt)] if system_prompt else []
    out += [m for m in messages if not (system_prompt and m.role == "system")]
    return json.dumps([m.to_json() for m in out], ensure_ascii=False, indent=2)


def import_file(path: Path) -> list[Message]:
    """`import_json` of a file; a refusal names the file."""
    try:
        return import_json(path.read_bytes())
    except InvalidParameter as error:
        reason = str(error).removeprefix(f"{error.param}: ")
        raise InvalidParameter("file", f"Could not import {path.name}: {reason}") from error


def import_json(text: str | bytes) -> list[Message]:
    """Messages from an exported file; a clear InvalidParameter for anything else."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidParameter("messages", "the file is not UTF-8 text") from error
    from pipelines.store.rows import loads

    try:
        data = loads(text)
    except ValueError as error:  # rows.RowsError: not JSON, or nested too deep
        raise InvalidParameter("messages", f"the file is {error}") from error
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]  # also accept {"messages": [...]}, as chat APIs send them
    if not isinstance(data, list):
        raise InvalidParameter("messages", "expected a JSON list of {role, content} objects")
    for index, item in enumerate(data[:MAX_MESSAGES]):
        # a message the file forgot to fill in is a broken file, not an empty turn to continue from
        if isinstance(item, dict) and item.get("content") is None:
            raise InvalidParameter("messages", f"message {index} ({item.get('role', 'no role')}) has no content")
    messages = normalise(data)
    for index, message in enumerate(messages):
        if message.role in ("user", "system") and not message.content.strip():
            raise InvalidParameter("messages", f"message {index} ({message.role}) is empty")
    return messages
