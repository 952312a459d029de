"""Streaming generation: the primitive every tab uses; batch and blocking calls wrap it.

We drive the model's forward pass ourselves rather than call `model.generate` because each step
must (a) pick the token with `sampling.process_logits` -- the same function the distribution
inspector shows -- (b) stream the token's log-probability and its top alternatives as it is made,
and (c) let several rows of one batch carry different sampling settings and seeds (the 2-4
responses of a preference comparison come from one call).
"""

from __future__ import annotations

import functools
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from pipelines import gpu
from pipelines.engine import scheduler
from pipelines.engine.batch_cache import left_padded, pad_id, prefill_inputs
from pipelines.engine.completion import Completion, TokenRecord, _find_stop, _held_back  # noqa: F401 - re-exported
from pipelines.engine.engines import Batch, Capabilities, Engine, Stop, stopped
from pipelines.engine.hardware import release_memory
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import (
    DistributionView,
    InvalidParameter,
    SamplingParams,
    greedy_token,
    inspect_distribution,
    process_logits,
    sample_with_probability,
)

Prompt = str | Sequence[int]
TOP_ALTERNATIVES = 5
FAST_ENGINE = "torch-fp16"  # Completion.engine of rows decoded by the lean fp16 decoder
MAX_PROMPT_CHARS = 200_000


class _Detokenizer:
    """Incremental decoding that never emits half a UTF-8 character (the TGI offset scheme)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> None:
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)

    def flush(self) -> None:
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix):
            self.text += full[len(prefix) :]
        self.prefix_offset = self.read_offset = len(self.ids)


def encode(handle: ModelHandle, prompt: Prompt) -> list[int]:
    """Token ids for a prompt: text is tokenized as the model expects (special tokens added)."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidParameter("prompt", "is empty")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidParameter("prompt", f"is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}")
        return list(handle.tokenizer(prompt, add_special_tokens=True)["input_ids"])
    ids = [int(i) for i in prompt]
    if not ids:
        raise InvalidParameter("prompt", "is empty")
    return ids


def fit_to_window(handle: ModelHandle, prompt_len: int, max_new_tokens: int) -> int:
    """How many tokens may be generated after a prompt of `prompt_len` tokens."""
    window = handle.context_window
    if prompt_len >= window:
        raise InvalidParameter(
            "prompt",
            f"is {prompt_len:,} tokens; the model's context window is {window:,} tokens "
            "(the prompt and the generated text must fit in it together)",
        )
    return min(max_new_tokens, window - prompt_len)


def _decode_token(handle: ModelHandle, token_id: int) -> str:
    return _token_text(handle.tokenizer, token_id)


@functools.lru_cache(maxsize=1 << 17)
def _token_text(tokenizer: Any, token_id: int) -> str:
    """One token's text, cached: every step shows each row's token and its alternatives."""
    return tokenizer.decode([token_id], skip_special_tokens=False)


class _RowState:
    """Everything one row needs between steps: its generator, token history and text so far.

    `advance` turns the next-token logits into the row's next token, whichever engine produced
    them, so sampling, log-probabilities, stop strings and streaming text are one code path.
    """

    def __init__(self, handle: ModelHandle, row: Completion, eos: frozenset[int], top_alternatives: int) -> None:
        self.handle = handle
        self.row = row
        self.eos = eos
        self.top_alternatives = top_alternatives
        self.generator = torch.Generator(device="cpu").manual_seed(row.seed)
        self.detok = _Detokenizer(handle.tokenizer)
        self.raw_text = ""
        self.history = torch.tensor(row.prompt_ids, dtype=torch.long)

    @property
    def ids(self) -> list[int]:
        return self.row.prompt_ids + self.row.completion_ids

    def cancel(self, started: float) -> None:
        self.detok.flush()
        self.row.text = self.detok.text
        self.row.finish_reason = "cancelled"
        self.row.seconds = time.perf_counter() - started

    def advance(
        self,
        logits: torch.Tensor,
        logprobs: torch.Tensor | None = None,
        top: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> int:
        """Pick, record and detokenize the next token from its logits; returns the token id.

        A batch passes each row's `logprobs` (log-softmax at T = 1) and `top` (values, ids) computed
        for all rows at once; alone, the row computes them itself.
        """
        row, detok, handle = self.row, self.detok, self.handle
        if row.params.greedy:
            token_id, probability = greedy_token(logits, row.params, self.history, top), 1.0
        else:
            processed = process_logits(logits, row.params, self.history, track_cuts=False)
            token_id, probability = sample_with_probability(processed, row.params, self.generator)
        self.history = torch.cat([self.history, torch.tensor([token_id])])
        if token_id in self.eos:
            detok.flush()  # release any text held back for a possible stop string
            row.text = detok.text
            row.finish_reason = "eos"
            return token_id
        if logprobs is None:
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        if top is None and self.top_alternatives:
            found = torch.topk(logprobs, self.top_alternatives)
            top = (found.values, found.indices)
        elif top is not None:
            top = (top[0][: self.top_alternatives], top[1][: self.top_alternatives])
        row.tokens.append(
            TokenRecord(
                token=_decode_token(handle, token_id),
                id=token_id,
                logprob=float(logprobs[token_id]),
                top=[]
                if top is None
                else [
                    {"token": _decode_token(handle, int(t)), "id": int(t), "logprob": float(v)}
                    for v, t in zip(top[0].tolist(), top[1].tolist(), strict=False)
                ],
                sampled_prob=probability,
            )
        )
        before = len(self.raw_text)
        detok.push(token_id)
        if len(row.tokens) >= row.max_new_tokens:
            detok.flush()
        self.raw_text = detok.text
        stops = row.params.stop
        hit = _find_stop(self.raw_text, stops, before) if stops else None
        if hit is not None:
            row.text = self.raw_text[:hit]
            row.finish_reason = "stop"
        elif len(row.tokens) >= row.max_new_tokens:
            row.text = self.raw_text
            row.finish_reason = "length"
        else:
            hold = _held_back(self.raw_text, stops) if stops else 0
            row.text = self.raw_text[: len(self.raw_text) - hold]
        return token_id


class LocalEngine:
    """The local model as an engine: the continuous-batching scheduler, with the lean fp16 decoder.

    With batching on every request's rows join the model's running batch; with it off each
    request decodes alone on the same batch code in the caller's thread (`scheduler.alone`). Only
    a model whose cache rows cannot join and leave (sliding-window or hybrid attention) decodes
    request by request on transformers' own cache, its rows left-padded in lock-step.
    """

    name = "torch"
    capabilities = Capabilities(adapters=True, batching=True, exact_distribution=True)

    def stream(self, handle: ModelHandle, batch: Batch, should_stop: Stop) -> Iterator[list[Completion]]:
        batcher = scheduler.for_handle(handle)
        if batcher is None and scheduler.editable(handle):
            batcher = scheduler.alone(handle, len(batch.rows))
        if batcher is not None:
            request = batcher.submit(batch.states, batch.adapters)  # refuses an unknown adapter, in this thread
            for row, lane in zip(batch.rows, request.lanes, strict=True):
                row.engine = FAST_ENGINE if lane == "fast" else "torch"
            yield from batcher.stream(request, should_stop)
            return
        adapters = batch.adapters
        if len(set(adapters)) > 1 and any(handle.is_prompt_tuning(a) for a in adapters):
            yield from _stream_parts(batch, adapters, lambda part, _: self.stream(handle, part, should_stop))
            return
        try:
            yield from _stream_torch(handle, batch, should_stop)
        finally:
            release_memory()

    def inspect(
        self, handle: ModelHandle, ids: Sequence[int], params: SamplingParams, *, adapter: str | None, top_n: int
    ) -> DistributionView:
        logits = next_token_logits(handle, ids, adapter)
        return inspect_distribution(
            logits, params, torch.tensor(list(ids), dtype=torch.long), lambda i: _decode_token(handle, i), top_n=top_n
        )


LOCAL = LocalEngine()


def engine_for(handle: ModelHandle, adapter: str | None) -> Engine:
    """Which engine serves a row with this adapter: the configured one when it can, else the local model."""
    engine = handle.engine
    if engine is not None and (adapter is None or engine.capabilities.adapters):
        return engine
    return LOCAL


@gpu.task()
def stream_batch(
    handle: ModelHandle,
    prompts: Sequence[Prompt],
    params: Sequence[SamplingParams],
    *,
    adapter: str | None | Sequence[str | None] = None,
    top_alternatives: int = TOP_ALTERNATIVES,
    should_stop: Callable[[], bool] | None = None,
    ignore_eos: bool = False,
) -> Iterator[list[Completion]]:
    """Generate for several prompts in one batch, yielding the rows after every step.

    Each row has its own sampling settings and its own seeded generator, so a row's text depends
    only on its prompt, settings and seed. `ignore_eos` keeps going past end-of-sequence
    (benchmarks need equal lengths). `adapter` is one adapter for every row, or one per row: rows
    with different LoRA adapters share a step (PEFT mixed-batch inference).

    The engine is chosen here, once per row (`engine_for`, pipelines/engine/engines.py): the local
    model's scheduler (continuous batching with every other request), llama.cpp, or an
    OpenAI-compatible server. Rows that go to different engines stream side by side as one list.
    """
    if len(prompts) != len(params) or not prompts:
        raise ValueError("stream_batch needs one SamplingParams per prompt")
    if isinstance(adapter, (list, tuple)) and len(adapter) != len(prompts):
        raise ValueError("stream_batch needs one adapter per prompt")
    adapters = list(adapter) if isinstance(adapter, (list, tuple)) else [adapter] * len(prompts)
    engines = [engine_for(handle, a) for a in adapters]
    rows = _completions(handle, prompts, params)
    eos = frozenset() if ignore_eos else handle.eos_token_ids
    batch = Batch(list(prompts), rows, [_RowState(handle, row, eos, top_alternatives) for row in rows], adapters)
    if len(set(map(id, engines))) == 1:
        yield from engines[0].stream(handle, batch, should_stop)
        return
    keys = [id(e) for e in engines]
    by_key = dict(zip(keys, engines, strict=True))
    yield from _stream_parts(batch, keys, lambda part, key: by_key[key].stream(handle, part, should_stop))


def _stream_parts(
    batch: Batch, keys: Sequence[Any], stream_part: Callable[..., Iterator[list[Completion]]]
) -> Iterator[list[Completion]]:
    """The batch's rows split by `keys` (engine, or prompt-tuning adapter), each part streamed in
    turn by `stream_part(part, key)`, the whole list yielded after every change."""
    for key in dict.fromkeys(keys):
        indices = [i for i, k in enumerate(keys) if k == key]
        part = Batch(
            [batch.prompts[i] for i in indices],
            [batch.rows[i] for i in indices],
            [batch.states[i] for i in indices],
            [batch.adapters[i] for i in indices],
        )
        for _ in stream_part(part, key):
            yield batch.rows


def _completions(handle: ModelHandle, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[Completion]:
    """A Completion per prompt: encoded, seeded, its budget fitted to the window."""
    rows: list[Completion] = []
    for prompt, p in zip(prompts, params, strict=False):
        ids = encode(handle, prompt)
        seed = p.seed if p.seed is not None else secrets.randbelow(2**31)
        rows.append(Completion(ids, p, seed, max_new_tokens=fit_to_window(handle, len(ids), p.max_new_tokens)))
    return rows


def _stream_torch(handle: ModelHandle, batch: Batch, should_stop: Stop) -> Iterator[list[Completion]]:
    """The request alone on transformers' own cache, rows left-padded and decoded in lock-step
    (finished rows are fed padding until all are done): for caches the batch cannot edit."""
    rows, states = batch.rows, batch.states
    adapter: str | None | list[str | None] = batch.adapters[0] if len(set(batch.adapters)) == 1 else batch.adapters
    device = handle.device
    padded, mask = left_padded([r.prompt_ids for r in rows], pad_id(handle))
    inputs, mask, positions = prefill_inputs(handle, padded, mask, adapter if isinstance(adapter, str) else None)
    needs_mask = "attention_mask" in inputs
    cache = None
    next_positions = positions[:, -1:] + 1
    started = time.perf_counter()
    chosen: list[int] | None = None
    try:
        while True:
            if stopped(should_stop, states, started):
                yield rows
                return
            if chosen is not None:
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=-1)
                inputs = {
                    "input_ids": torch.tensor(chosen, dtype=torch.long).unsqueeze(-1).to(device),
                    "position_ids": next_positions.to(device),
                    "use_cache": True,
                    "logits_to_keep": 1,
                }
                if needs_mask:
                    inputs["attention_mask"] = mask.to(device)
                next_positions = next_positions + 1
            out = handle.forward(**inputs, past_key_values=cache, adapter=adapter)
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float().cpu()
            chosen = [pad_id(handle) if s.row.done else s.advance(logits[i]) for i, s in enumerate(states)]
            elapsed = time.perf_counter() - started
            for row in rows:
                if not row.done or row.seconds == 0.0:
                    row.seconds = elapsed
            yield rows
            if all(r.done for r in rows):
                return
    finally:
        cache = None  # release the KV cache as soon as the stream ends, not when the generator is collected


def stream(handle: ModelHandle, prompt: Prompt, params: SamplingParams, **kwargs: Any) -> Iterator[Completion]:
    for rows in stream_batch(handle, [prompt], [params], **kwargs):
        yield rows[0]


def generate(handle: ModelHandle, prompt: Prompt, params: SamplingParams, **kwargs: Any) -> Completion:
    completion = None
    for completion in stream(handle, prompt, params, **kwargs):  # noqa: B007 - a stream drained for its last value
        pass
    assert completion is not None
    return completion


def generate_batch(
    handle: ModelHandle, prompts: Sequence[Prompt], params: Sequence[SamplingParams], **kwargs: Any
) -> list[Completion]:
    rows: list[Completion] = []
    for rows in stream_batch(handle, prompts, params, **kwargs):  # noqa: B007 - a stream drained for its last value
        pass
    return rows


# --- the distribution inspector ---------------------------------------------------------------


class _LogitsCache:
    """Recent next-token logits by context, so moving a slider re-filters without a forward pass."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, handle: ModelHandle, ids: Sequence[int], adapter: str | None) -> torch.Tensor:
        key = (id(handle.base_model), handle.adapter_fingerprint(adapter), tuple(ids))
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        ids_tensor = torch.tensor([list(ids)], dtype=torch.long)
        inputs, _, _ = prefill_inputs(handle, ids_tensor, torch.ones_like(ids_tensor), adapter)
        inputs["use_cache"] = False
        out = handle.forward(**inputs, adapter=adapter)
        logits = out.logits[0, -1, :].float().cpu()
        self.entries[key] = logits
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return logits


_logits_cache = _LogitsCache()


def next_token_logits(handle: ModelHandle, ids: Sequence[int], adapter: str | None = None) -> torch.Tensor:
    return _logits_cache.get(handle, ids, adapter)


@gpu.task()
def inspect_next_token(
    handle: ModelHandle,
    context_ids: Sequence[int],
    params: SamplingParams,
    *,
    adapter: str | None = None,
    top_n: int = 20,
) -> DistributionView:
    """The next-token distribution after `context_ids`, before and after the sampling settings."""
    ids = list(context_ids)
    if not ids:
        raise InvalidParameter("prompt", "is empty")
    fit_to_window(handle, len(ids), 1)
    return engine_for(handle, adapter).inspect(handle, ids, params, adapter=adapter, top_n=top_n)
