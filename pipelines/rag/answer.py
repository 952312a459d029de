"""Answering from retrieved passages, with numbered citations, beside an answer without them.

The grounding instruction says to use only the passages, to cite them as [n], and to say so
when they do not contain the answer -- the most common complaint about RAG systems is answers
from the model's own memory instead of the documents. The prompt is fitted to the context
window by dropping the lowest-ranked passages, then shortening the last one kept; the caller
is told what was left out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Sequence

from .. import chat, generation
from ..chat import Message
from ..messages import ChatIds
from ..models import ModelHandle
from ..sampling import SamplingParams
from .attribution import citations  # noqa: F401  (answer.citations is the public name)
from .retrieval import Hit

INSTRUCTION = (
    "Answer the question using only the numbered context passages below. After each statement, cite the "
    "passage it comes from like [1] or [2]. If the passages do not contain the answer, say that the documents "
    "do not say, instead of answering from memory. Be brief."
)


@dataclass
class GroundedPrompt:
    messages: list[Message]
    hits: list[Hit]  # the passages actually in the prompt, numbered [1]..[n] in this order
    ids: list[int]
    max_new_tokens: int
    notice: str = ""


def _passage(number: int, hit: Hit, text: str | None = None) -> str:
    where = hit.chunk.source + (f", page {hit.chunk.page}" if hit.chunk.page else "")
    return f"[{number}] ({where}) {text if text is not None else hit.chunk.text}"


def _messages(question: str, passages: Sequence[str]) -> list[Message]:
    # Passages are numbered by rank but placed best-last, next to the question: small models
    # lean on the text nearest the question (SmolLM2-135M answered 4/4 test questions this way,
    # 2/4 with the best passage first).
    context = "\n\n".join(reversed(passages)) if passages else "(no passages)"
    return [Message("system", INSTRUCTION), Message("user", f"Context:\n{context}\n\nQuestion: {question.strip()}")]


def grounded_prompt(handle: ModelHandle, question: str, hits: Sequence[Hit], max_new_tokens: int) -> GroundedPrompt:
    window = handle.context_window
    budget = window - max(1, min(max_new_tokens, window // 2))
    passages = [_passage(i + 1, h) for i, h in enumerate(hits)]
    kept = list(hits)
    notes: list[str] = []
    _, ids = chat.render(handle, _messages(question, passages))
    while len(ids) > budget and len(kept) > 1:
        kept.pop()
        passages.pop()
        _, ids = chat.render(handle, _messages(question, passages))
    if len(kept) < len(hits):
        notes.append(f"only the top {len(kept)} of {len(hits)} passages fit in the {window:,}-token context window")
    if len(ids) > budget and kept:
        words = kept[-1].chunk.text.split()
        while len(ids) > budget and len(words) > 8:
            words = words[: int(len(words) * 0.8)]
            passages[-1] = _passage(len(kept), kept[-1], " ".join(words) + " …")
            _, ids = chat.render(handle, _messages(question, passages))
        notes.append(f"passage [{len(kept)}] was shortened to fit")
    if len(ids) > budget:
        raise ValueError(f"the question alone does not fit in the {window:,}-token context window")
    messages = _messages(question, passages)
    return GroundedPrompt(
        messages, kept, ChatIds(ids, messages), min(max_new_tokens, window - len(ids)), "; ".join(notes)
    )


def stream_answers(
    handle: ModelHandle,
    question: str,
    hits: Sequence[Hit],
    params: SamplingParams,
    *,
    adapter: str | None = None,
    with_baseline: bool = True,
    should_stop=None,
) -> Iterator[tuple[generation.Completion, generation.Completion | None, GroundedPrompt]]:
    """Stream the grounded answer and (in the same batch) the answer without retrieval."""
    prompt = grounded_prompt(handle, question, hits, params.max_new_tokens)
    fitted = replace(params, max_new_tokens=max(1, prompt.max_new_tokens))
    prompts: list[list[int]] = [prompt.ids]
    if with_baseline:
        plain = chat.build_prompt(handle, [Message("user", question.strip())], max_new_tokens=fitted.max_new_tokens)
        prompts.append(plain.ids)
    for rows in generation.stream_batch(
        handle, prompts, [fitted] * len(prompts), adapter=adapter, should_stop=should_stop
    ):
        yield rows[0], (rows[1] if with_baseline else None), prompt
