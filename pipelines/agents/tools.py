"""The read-only tools: generate, chat, the next-token distribution, scoring, perplexity,
tokenizing, RAG answers over a named collection, and the reasoning strategies side by side.

Agents read a tool's signature and docstring, nothing else: every parameter is a plain JSON type
with a default where the UI has one, and the docstring's `Args:`/`Returns:` sections are what the
agent is told (Gradio's MCP server parses them). Inputs are checked by the same pipelines as the
UI's and the CLI's, so an agent gets the same refusals (an empty prompt, an unknown adapter, a
temperature out of range) and the same limits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

JSON = str  # every tool returns one JSON document as text (an agent reads text; a dict would arrive as a repr)


def _dumps(document: dict[str, Any]) -> JSON:
    return json.dumps(document, ensure_ascii=False)


def _adapter(name: str) -> str | None:
    return name.strip() or None


def _seed(seed: int) -> int | None:
    return None if seed < 0 else seed


def generate(
    prompt: str,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    seed: int = -1,
    adapter: str = "",
) -> JSON:
    """Continue a text with the playground's language model (plain completion, no chat template).

    Args:
        prompt: the text to continue
        max_new_tokens: most tokens to generate (1 to 8192, fitted to the context window)
        temperature: 0 = greedy (always the most likely token); higher = more random
        top_k: keep only the k most likely tokens; 0 = off
        top_p: keep the smallest set of tokens whose probability reaches p; 1 = off
        min_p: keep tokens at least min_p times as likely as the top one; 0 = off
        repetition_penalty: divides the logits of tokens already seen; 1 = off
        seed: the same seed and settings give the same text; -1 = a fresh seed, reported back
        adapter: name of a trained adapter to apply (see the Fine-tune tab); empty = the base model
    Returns:
        JSON {"text", "tokens": [{"token", "id", "logprob", "top", "sampled_prob"}], "finish_reason", "prompt_tokens", "completion_tokens", "seed", "tokens_per_second", "engine"}
    """
    from pipelines.engine import generation, models
    from pipelines.engine.sampling import SamplingParams

    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        seed=_seed(seed),
    )
    completion = generation.generate(models.get_handle(), prompt, params, adapter=_adapter(adapter))
    return _dumps(completion.to_json())


def chat(
    messages: list[dict],
    system_prompt: str = "",
    max_new_tokens: int = 128,
    temperature: float = 0.7,
    top_p: float = 1.0,
    seed: int = -1,
    adapter: str = "",
) -> JSON:
    """Reply to a conversation with the model's chat template, as the Chat tab does.

    Args:
        messages: the conversation, OpenAI-style [{"role": "user"|"assistant"|"system", "content": "..."}], ending with a user message
        system_prompt: a system prompt to put first; empty = the conversation's own (or the model's default)
        max_new_tokens: most tokens in the reply (1 to 8192)
        temperature: 0 = greedy; higher = more random
        top_p: nucleus sampling threshold; 1 = off
        seed: the same seed and settings give the same reply; -1 = a fresh seed, reported back
        adapter: name of a trained adapter to apply; empty = the base model
    Returns:
        JSON {"role": "assistant", "content", "prompt_tokens", "completion_tokens", "finish_reason", "dropped_turns", "truncated_chars", "seed"}
    """
    from pipelines.engine import chat as chat_engine
    from pipelines.engine import messages as message_rules
    from pipelines.engine import models
    from pipelines.engine.sampling import SamplingParams

    conversation = message_rules.normalise(messages)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=_seed(seed))
    completion, prompt = chat_engine.reply(
        models.get_handle(),
        conversation,
        params,
        system_prompt=system_prompt.strip() or None,
        adapter=_adapter(adapter),
    )
    return _dumps(chat_engine.reply_json(completion, prompt))


def next_token_distribution(
    prompt: str,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    top_n: int = 20,
    adapter: str = "",
) -> JSON:
    """The model's probabilities for the next token after a text, before and after the sampling settings.

    Args:
        prompt: the text so far
        temperature: divides the logits before the softmax (0 = greedy)
        top_k: keep only the k most likely tokens; 0 = off
        top_p: nucleus threshold; 1 = off
        min_p: keep tokens at least min_p times as likely as the top one; 0 = off
        top_n: how many candidate tokens to list (1 to 100)
        adapter: name of a trained adapter to apply; empty = the base model
    Returns:
        JSON {"candidates": [{"token", "id", "raw_prob", "final_prob", "cut_by"}], "raw_entropy_bits", "final_entropy_bits", "kept_tokens", "vocab_size", "cut_mass", "approximate"}
    """
    from dataclasses import asdict

    from pipelines.engine import generation, models
    from pipelines.engine.sampling import InvalidParameter, SamplingParams

    if not 1 <= top_n <= 100:
        raise InvalidParameter("top_n", f"must be between 1 and 100, got {top_n}")
    params = SamplingParams(max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    handle = models.get_handle()
    view = generation.inspect_next_token(
        handle, generation.encode(handle, prompt), params, adapter=_adapter(adapter), top_n=top_n
    )
    document = asdict(view)
    document["candidates"] = document.pop("rows")
    return _dumps(document)


def score_continuation(prompt: str, continuation: str, adapter: str = "") -> JSON:
    """How likely the model finds a continuation after a prompt: log P(continuation | prompt).

    Args:
        prompt: the text before
        continuation: the text whose probability is measured (tokenised on its own, as evaluation harnesses do)
        adapter: name of a trained adapter to apply; empty = the base model
    Returns:
        JSON {"logprob", "prob", "rank" (of the continuation's first token among all next tokens, 1 = top), "tokens": [{"piece", "logprob", "rank"}], "top_next"}
    """
    from pipelines import inside
    from pipelines.engine import models

    return _dumps(inside.score(models.get_handle(), prompt, continuation, adapter=_adapter(adapter)))


def perplexity(text: str, adapter: str = "") -> JSON:
    """Each token's log-probability in a text, the mean loss and the perplexity exp(mean loss).

    Args:
        text: the text to score (at most the model's window of tokens)
        adapter: name of a trained adapter to apply; empty = the base model
    Returns:
        JSON {"tokens": [{"piece", "logprob"}], "mean_loss", "perplexity"}
    """
    from pipelines import inside
    from pipelines.engine import models

    return _dumps(inside.perplexity(models.get_handle(), text, adapter=_adapter(adapter)))


def tokenize(text: str, as_chat: bool = False) -> JSON:
    """The text as the model reads it: token ids and pieces.

    Args:
        text: the text to split into tokens
        as_chat: wrap it as one user message in the chat template first (shows the template's special tokens)
    Returns:
        JSON {"tokens": [{"id", "piece", "text", "special"}], "count", "characters"}
    """
    from pipelines import inside
    from pipelines.engine import models

    return _dumps(inside.tokens(models.get_handle().tokenizer, text, as_chat=as_chat))


def rag_ask(collection: str, question: str, k: int = 5, mode: str = "hybrid", max_new_tokens: int = 256) -> JSON:
    """Answer a question from a document collection, citing the passages used (greedy decoding).

    Args:
        collection: name of an existing RAG collection (see the RAG tab)
        question: the question to answer
        k: passages retrieved and put in the prompt (1 to 20)
        mode: "dense" (embedding similarity), "bm25" (shared words) or "hybrid" (both, fused by reciprocal rank)
        max_new_tokens: most tokens in the answer
    Returns:
        JSON {"answer", "citations": [passage numbers], "chunks": [{"text", "source", "page", "score", "chunk_id"}], "sources", "support": [{"sentence", "passages"}], "mode", "k"}
    """
    from pipelines.engine import models
    from pipelines.engine.sampling import SamplingParams
    from pipelines.rag import answer, retrieval

    search = retrieval.SearchSpec(mode=mode, k=k)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    return _dumps(answer.ask(models.get_handle(), collection, question, params, search))


def reasoning_compare(question: str, strategies: str = "direct,cot,pal", max_new_tokens: int = 0) -> JSON:
    """The same question answered directly, with chain-of-thought and program-aided (PAL: the model
    writes Python, run in the sandbox), greedy, side by side.

    Args:
        question: a question with a numeric answer (a word problem)
        strategies: comma-separated subset of direct, cot, pal
        max_new_tokens: a cap on each strategy's tokens; 0 = each strategy's own budget
    Returns:
        JSON {"results": [{"strategy", "name", "answer", "output", "program", "error", "tokens", "prompt_tokens", "seconds"}]}
    """
    from pipelines.engine import models
    from pipelines.engine.sampling import InvalidParameter, SamplingParams
    from pipelines.reasoning import solve
    from pipelines.reasoning import strategies as strategy_files

    if not 0 <= max_new_tokens <= strategy_files.MAX_BUDGET:
        raise InvalidParameter("max_new_tokens", f"must be between 0 and {strategy_files.MAX_BUDGET}")
    chosen = strategy_files.load_all(strategy_files.parse_keys(strategies))
    params = SamplingParams(max_new_tokens=max_new_tokens or 1, temperature=0.0)
    solve.check_inputs(question, 1, params)
    results = solve.solve(models.get_handle(), question, chosen, params, samples=1, token_cap=max_new_tokens or None)
    return _dumps({"results": [r.to_json() for r in results]})


# served over MCP when PLAYGROUND_MCP=1 (playground/mcp.py); each name is the tool's name
READ_ONLY: tuple[Callable[..., JSON], ...] = (
    generate,
    chat,
    next_token_distribution,
    score_continuation,
    perplexity,
    tokenize,
    rag_ask,
    reasoning_compare,
)
