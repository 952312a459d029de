"""Comparison items: one prompt, 2-4 responses from configured sources, in one batched call.

A source is the base model or an adapter, with its own sampling settings and seed. The display
order is drawn before generating, so what streams on screen is already in the order it will
be stored (and position bias can be measured later).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from pipelines.engine import chat, generation
from pipelines.engine.chat import Message
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import PlaygroundError
from pipelines.labels import preferences


@dataclass(frozen=True)
class Source:
    adapter: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)

    @property
    def label(self) -> str:
        return self.adapter or "base"


def stream_item(
    handle: ModelHandle,
    prompt: Sequence[Message],
    sources: Sequence[Source],
    *,
    origin: str = "typed",
    created_by: str | None = None,
    rng: random.Random | None = None,
    should_stop=None,
) -> Iterator[tuple[list[str], preferences.ItemView | None]]:
    """Yield the responses' texts (in display order) as they stream; the stored item comes last."""
    if not 2 <= len(sources) <= preferences.MAX_RESPONSES:
        raise preferences.PreferenceError(f"a comparison needs 2 to {preferences.MAX_RESPONSES} sources")
    messages = chat.normalise(prompt)
    order = list(range(len(sources)))
    (rng or random.SystemRandom()).shuffle(order)
    shown = [sources[i] for i in order]
    longest = max(s.params.max_new_tokens for s in shown)
    rendered = chat.build_prompt(handle, messages, max_new_tokens=longest)
    params = [replace(s.params, max_new_tokens=min(s.params.max_new_tokens, rendered.max_new_tokens)) for s in shown]
    rows: list[generation.Completion] = []
    for rows in generation.stream_batch(
        handle, [rendered.ids] * len(shown), params, adapter=[s.adapter for s in shown], should_stop=should_stop
    ):
        yield [r.text for r in rows], None
    drafts = [
        preferences.ResponseDraft(
            text=row.text.strip(), source=src.label, model=handle.name, sampling=src.params.to_dict(), seed=row.seed
        )
        for row, src in zip(rows, shown, strict=False)
    ]
    item = preferences.create_item(messages, drafts, origin=origin, created_by=created_by, shuffle=False)
    yield [d.text for d in drafts], item


def generate_item(
    handle: ModelHandle, prompt: Sequence[Message], sources: Sequence[Source], **kwargs
) -> preferences.ItemView:
    item = None
    for _, item in stream_item(handle, prompt, sources, **kwargs):  # noqa: B007 - a stream drained for its last value
        pass
    assert item is not None
    return item


def queue_items(
    handle: ModelHandle,
    prompts: Sequence[Sequence[Message]],
    sources: Sequence[Source],
    *,
    progress: Callable[[int, int], None] | None = None,
    **kwargs,
) -> int:
    """One comparison item per prompt, queued for labelling; returns how many were made.

    A prompt that fails stops the run with a PreferenceError that says how many items are already
    queued (they stay: each is stored as it is made).
    """
    made = 0
    for number, prompt in enumerate(prompts, start=1):
        if progress is not None:
            progress(number - 1, len(prompts))
        try:
            generate_item(handle, prompt, sources, **kwargs)
        except (PlaygroundError, ValueError) as error:
            raise preferences.PreferenceError(f"after {made} items: {error}") from error
        made += 1
    return made


# --- from a chat to preference items -------------------------------------------------------------


def _with_system(messages: Sequence[Message], system_prompt: str | None) -> list[Message]:
    return ([Message("system", system_prompt)] if system_prompt else []) + list(messages)


def rate_reply(
    messages: Sequence[Message],
    index: int,
    liked: bool,
    *,
    system_prompt: str | None,
    annotator: str,
    model: str,
    session_id: str | None = None,
) -> preferences.VoteResult:
    """A thumbs up/down on reply `index` of a chat: a one-response item (the conversation before the
    reply is its prompt) with the annotator's label on it."""
    if not 0 < index < len(messages) or messages[index].role != "assistant":
        raise preferences.PreferenceError("rate an assistant reply")
    item = preferences.create_item(
        _with_system(messages[:index], system_prompt),
        [preferences.ResponseDraft(messages[index].content, source="chat", model=model)],
        origin="chat-feedback",
        created_by=annotator,
    )
    return preferences.submit_label(item.id, annotator, "up" if liked else "down", session_id=session_id)


def queue_reply_against_alternative(
    handle: ModelHandle,
    messages: Sequence[Message],
    params: SamplingParams,
    *,
    system_prompt: str | None,
    adapter: str | None,
    created_by: str | None,
) -> preferences.ItemView:
    """The chat's last reply against a fresh answer to the same conversation, queued for everyone's votes."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        raise preferences.PreferenceError("there is no user message to work on yet")
    if messages[-1].role != "assistant":
        raise preferences.PreferenceError("wait for a reply first: the comparison pits it against a new one")
    prompt = _with_system(messages[: last_user + 1], system_prompt)
    alternative, _ = chat.reply(handle, prompt, params, adapter=adapter)
    source = adapter or "base"
    return preferences.create_item(
        prompt,
        [
            preferences.ResponseDraft(messages[-1].content, source=source, model=handle.name),
            preferences.ResponseDraft(
                alternative.text.strip(),
                source=source,
                model=handle.name,
                sampling=params.to_dict(),
                seed=alternative.seed,
            ),
        ],
        origin="chat-compare",
        created_by=created_by,
    )
