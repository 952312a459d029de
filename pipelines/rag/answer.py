"""Answering from retrieved passages, with numbered citations, beside an answer without them.

The grounding instruction says to use only the passages, to cite them as [n], and to say so
when they do not contain the answer -- the most common complaint about RAG systems is answers
from the model's own memory instead of the documents. The prompt is fitted to the context
window by dropping the lowest-ranked passages, then shortening the last one kept; the caller
is told what was left out.

A chunk is sized in the embedder's word pieces (at most 254), but the model reads it in its own
tokens: English prose is about as long in both, while a chunk of one unbroken string (a hash, a
base64 blob, random letters) became ~1,100 model tokens, and five of them a 5,700-token prompt
that cost +1.4 to +3.2 GB to prefill here (issue 35, L3). So each passage is cut to
`MAX_PASSAGE_TOKENS` model tokens, and the caller is told.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipelines.engine import chat, generation
from pipelines.engine.chat import Message
from pipelines.engine.messages import ChatIds
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.rag import attribution, retrieval
from pipelines.rag.attribution import citations  # noqa: F401  (answer.citations is the public name)
from pipelines.rag.retrieval import Hit, SearchSpec

MAX_PASSAGE_TOKENS = 384  # 1.5x the largest chunk in the embedder's word pieces: prose is never cut

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


def _bounded(handle: ModelHandle, text: str) -> tuple[str, bool]:
    """The passage's text within MAX_PASSAGE_TOKENS of the model's tokens (and whether it was cut)."""
    ids = handle.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= MAX_PASSAGE_TOKENS:
        return text, False
    return handle.tokenizer.decode(ids[:MAX_PASSAGE_TOKENS]) + " …", True


def grounded_prompt(handle: ModelHandle, question: str, hits: Sequence[Hit], max_new_tokens: int) -> GroundedPrompt:
    window = handle.context_window
    budget = window - max(1, min(max_new_tokens, window // 2))
    bounded = [_bounded(handle, h.chunk.text) for h in hits]
    passages = [_passage(i + 1, h, text) for i, (h, (text, _)) in enumerate(zip(hits, bounded, strict=False))]
    kept = list(hits)
    notes: list[str] = []
    cut = [str(i + 1) for i, (_, was_cut) in enumerate(bounded) if was_cut]
    if cut:
        notes.append(
            f"passage{'s' if len(cut) > 1 else ''} [{'], ['.join(cut)}] "
            f"{'were' if len(cut) > 1 else 'was'} cut to {MAX_PASSAGE_TOKENS} tokens (one unbroken string)"
        )
    _, ids = chat.render(handle, _messages(question, passages))
    while len(ids) > budget and len(kept) > 1:
        kept.pop()
        passages.pop()
        _, ids = chat.render(handle, _messages(question, passages))
    if len(kept) < len(hits):
        notes.append(f"only the top {len(kept)} of {len(hits)} passages fit in the {window:,}-token context window")
    if len(ids) > budget and kept:
        words = bounded[len(kept) - 1][0].split()
        while len(ids) > budget and len(words) > 8:
            words = words[: int(len(words) * 0.8)]
            passages[-1] = _passage(len(kept), kept[-1], " ".join(words) + " …")
            _, ids = chat.render(handle, _messages(question, passages))
        notes.append(f"passage [{len(kept)}] was shortened to fit")
    if len(ids) > budget:
        raise InvalidParameter("question", f"alone does not fit in the {window:,}-token context window")
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


@dataclass
class Answered:
    """One question answered headless: the passages found, and (unless only retrieving) the
    grounded prompt and its completion."""

    hits: list[Hit]
    prompt: GroundedPrompt | None = None
    completion: generation.Completion | None = None


def answered(
    handle: ModelHandle,
    collection: str,
    question: str,
    params: SamplingParams,
    search: SearchSpec | None = None,
    *,
    generate: bool = True,
) -> Answered:
    search = search or SearchSpec()
    hits = retrieval.search(collection, question, k=search.k, mode=search.mode)
    if not generate:
        return Answered(hits)
    completion, prompt = None, None
    for completion, _, prompt in stream_answers(handle, question, hits, params, with_baseline=False):  # noqa: B007 - drained for its last value
        pass
    return Answered(hits, prompt, completion)


def report(found: Answered, search: SearchSpec) -> dict[str, Any]:
    """As `rag query --json` prints it and agents receive it: the passages, the grounded answer,
    the passages it cites and which sentences they support."""
    text, cited, supports = None, [], []
    if found.completion is not None and found.prompt is not None:
        text = found.completion.text.strip()
        cited = citations(text, len(found.prompt.hits))
        supports = attribution.attribute(text, found.prompt.hits)
    return {
        "chunks": [h.to_json() for h in found.hits],
        "answer": text,
        "citations": cited,
        "mode": search.mode,
        "k": search.k,
        "sources": attribution.supporting_passages(supports),
        "support": [s.to_json() for s in supports],
    }


def ask(
    handle: ModelHandle, collection: str, question: str, params: SamplingParams, search: SearchSpec | None = None
) -> dict[str, Any]:
    """`report` of `answered`: one question, answered."""
    search = search or SearchSpec()
    return report(answered(handle, collection, question, params, search), search)
