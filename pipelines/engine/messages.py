"""Chat messages as the app passes them around: validated, flattened to text, torch-free.

Gradio 6 sends content as lists of blocks, OpenAI-style clients as strings; both become `Message`.
Storage (preferences), datasets and the CLI use these without importing the model stack; rendering
them into a prompt is `pipelines.engine.chat`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.errors import InvalidParameter

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 2_000
MAX_CONTENT_CHARS = 200_000


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def flatten_content(content: Any) -> str:
    """Text of a message's content: a string, or Gradio 6 / OpenAI content blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, (list, tuple)):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block, dict) and block.get("type") not in (None, "text"):
                continue  # files/images: this text model cannot read them
            else:
                raise InvalidParameter("content", f"unsupported content block {block!r}")
        return "".join(parts)
    raise InvalidParameter("content", f"must be text, got {type(content).__name__}")


def normalise(raw: Iterable[Any]) -> list[Message]:
    """Validated messages from OpenAI-style dicts (or Gradio chatbot values)."""
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        raise InvalidParameter("messages", "must be a list of {role, content} objects")
    out: list[Message] = []
    for index, item in enumerate(raw):
        if index >= MAX_MESSAGES:
            raise InvalidParameter("messages", f"at most {MAX_MESSAGES} messages")
        if isinstance(item, Message):
            out.append(item)
            continue
        if not isinstance(item, dict):
            raise InvalidParameter("messages", f"message {index} is not an object")
        role = item.get("role")
        if role not in ROLES:
            raise InvalidParameter("messages", f"message {index} has role {role!r}; expected one of {', '.join(ROLES)}")
        try:
            content = flatten_content(item.get("content"))
        except ValueError as error:
            raise InvalidParameter("messages", f"message {index}: {error}") from error
        if len(content) > MAX_CONTENT_CHARS:
            raise InvalidParameter("messages", f"message {index} is longer than {MAX_CONTENT_CHARS:,} characters")
        out.append(Message(role, content))
    return out


def split_system(messages: Sequence[Message]) -> tuple[str | None, list[Message]]:
    """The leading system prompt (if any) and the rest; later system messages are kept in place."""
    if messages and messages[0].role == "system":
        return messages[0].content, list(messages[1:])
    return None, list(messages)


class ChatIds(list[int]):
    """A rendered chat prompt's token ids that remember the messages they were rendered from.

    Every tab builds chat prompts with `chat.build_prompt` and passes its ids to
    `generation.stream_batch`; locally they are just ids, while a remote engine sends the messages
    to the server's chat endpoint so that the server applies its own model's template.
    """

    def __init__(self, ids: Iterable[int], messages: Sequence[Message]) -> None:
        super().__init__(ids)
        self.messages = [m.to_json() for m in messages]
