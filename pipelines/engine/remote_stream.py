"""Rows streamed from a remote OpenAI-compatible server, filled like the local engines' rows.

Each row is one streamed request (rows of one call differ in settings and seeds, which a single
request with `n` cannot carry), read in its own thread; the caller gets the rows after every
chunk, as from the local engines. Token records carry the server's token texts, log-probabilities
and alternatives as it sent them; a token's `id` is the local tokenizer's id for that text when
the text is exactly one local token (the same model family), else -1.

Stop strings are sent to the server and also watched here, so the text a stop string ends is cut
the same way whether or not the server honours `stop`. When the server fails, the row ends with
finish_reason "error" and the text it had; after the last rows are yielded the ServerError
(naming the server) is raised, so every tab shows one clear message and keeps the partial text.
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pipelines.engine import topk_view
from pipelines.engine.completion import Completion, TokenRecord, _find_stop, _held_back
from pipelines.engine.engines import Batch, Capabilities, Stop
from pipelines.engine.openai_engine import OpenAIEngine, Piece, RemoteToken, ServerError
from pipelines.engine.sampling import DistributionView, SamplingParams

log = logging.getLogger(__name__)
ENGINE = "openai"  # Completion.engine of rows the server made
POLL_SECONDS = 0.1  # how often a waiting caller checks its Stop


@functools.lru_cache(maxsize=1 << 16)
def _local_id(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False) if text else []
    if len(ids) == 1 and tokenizer.decode(ids, skip_special_tokens=False) == text:
        return int(ids[0])
    return -1


def prompt_text(handle: Any, prompt: str | Sequence[int]) -> str:
    """What the server is sent as a completion prompt: the text, or token ids decoded by the local tokenizer."""
    if isinstance(prompt, str):
        return prompt
    return str(handle.tokenizer.decode(list(prompt), skip_special_tokens=False))


class _Row:
    """One row's stream state: text so far (some held back for a stop string), its own cancel."""

    def __init__(self, handle: Any, row: Completion) -> None:
        self.handle = handle
        self.row = row
        self.raw = ""
        self.cancel = threading.Event()

    def record(self, token: RemoteToken) -> TokenRecord:
        params = self.row.params
        top = [(t.token, t.logprob) for t in token.top]
        if token.logprob is not None and token.token not in {t for t, _ in top}:
            top.append((token.token, token.logprob))
        if params.greedy:
            sampled = 1.0
        else:
            found = topk_view.sampled_probability(top, token.token, params) if top else None
            sampled = found if found is not None else (math.exp(token.logprob) if token.logprob is not None else 0.0)
        tokenizer = self.handle.tokenizer
        return TokenRecord(
            token=token.token,
            id=_local_id(tokenizer, token.token),
            logprob=token.logprob if token.logprob is not None else float("nan"),
            top=[{"token": t.token, "id": _local_id(tokenizer, t.token), "logprob": t.logprob} for t in token.top],
            sampled_prob=sampled,
        )

    def apply(self, piece: Piece, started: float) -> None:
        row = self.row
        if row.done:
            return
        row.tokens.extend(self.record(t) for t in piece.tokens)
        before = len(self.raw)
        self.raw += piece.text
        stops = row.params.stop
        hit = _find_stop(self.raw, stops, before) if stops else None
        if hit is not None:
            row.text, row.finish_reason = self.raw[:hit], "stop"
            self.cancel.set()  # the server may go on past a stop string it does not know: no need to read it
        elif piece.finish_reason is not None:
            row.text = self.raw
            row.finish_reason = _finish(piece, bool(stops))
        else:
            hold = _held_back(self.raw, stops) if stops else 0
            row.text = self.raw[: len(self.raw) - hold]
        row.seconds = time.perf_counter() - started

    def end(self, finish_reason: str, started: float, error: ServerError | None = None) -> None:
        """End an unfinished row early ("error" or "cancelled"), keeping all the text it has."""
        row = self.row
        if row.done:
            return
        row.text = self.raw
        row.finish_reason = finish_reason
        row.error = str(error) if error is not None else None
        row.seconds = time.perf_counter() - started


def _finish(piece: Piece, has_stops: bool) -> str:
    """Our finish reason from the server's: OpenAI's "stop" covers both a stop string and end of sequence.

    vLLM and SGLang add `stop_reason` (the stop string, or None / a token id for end of sequence);
    without it, "stop" means a stop string only if the row had any.
    """
    if piece.finish_reason == "length":
        return "length"
    if piece.stop_reason_given:
        return "stop" if isinstance(piece.stop_reason, str) else "eos"
    return "stop" if has_stops else "eos"


def stream_rows(
    handle: Any,
    engine: OpenAIEngine,
    rows: list[Completion],
    prompts: Sequence[Any],
    should_stop: Callable[[], bool] | None,
) -> Iterator[list[Completion]]:
    """Stream every row from the server at once; yields the rows after each batch of chunks."""
    states = [_Row(handle, row) for row in rows]
    bodies = []
    for row, prompt in zip(rows, prompts, strict=False):
        row.engine = ENGINE
        messages = getattr(prompt, "messages", None)
        budget = row.max_new_tokens  # fitted into the context window
        if messages is not None:
            bodies.append(engine.body(row.params, seed=row.seed, messages=messages, max_tokens=budget))
        else:
            bodies.append(engine.body(row.params, seed=row.seed, prompt=prompt_text(handle, prompt), max_tokens=budget))
    updates: queue.Queue[tuple[int, Piece | None, ServerError | None]] = queue.Queue()

    def read(index: int, body: dict[str, Any], cancel: threading.Event) -> None:
        try:
            for piece in engine.stream(body, cancel):
                updates.put((index, piece, None))
            updates.put((index, None, None))
        except ServerError as error:
            updates.put((index, None, error))
        except Exception as error:  # noqa: BLE001 - anything else still ends the row with a message
            log.exception("reading from %s failed", engine.shown_url)
            updates.put((index, None, ServerError(f"reading from the server at {engine.shown_url} failed: {error}")))

    started = time.perf_counter()
    for index, (state, body) in enumerate(zip(states, bodies, strict=False)):
        threading.Thread(target=read, args=(index, body, state.cancel), name=f"openai-row-{index}", daemon=True).start()
    first_error: ServerError | None = None
    try:
        while not all(r.done for r in rows):
            if should_stop is not None and should_stop():
                for state in states:
                    state.end("cancelled", started)
                yield rows
                return
            try:
                item = updates.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            while True:  # take every chunk that is already here, then show them at once
                index, piece, error = item
                state = states[index]
                if piece is not None:
                    state.apply(piece, started)
                elif error is not None:
                    state.end("error", started, error)
                    first_error = first_error or error
                elif not state.row.done:  # the stream ended; a well-behaved server said why first
                    error = ServerError(f"the server at {engine.shown_url} ended the stream early")
                    state.end("error", started, error)
                    first_error = first_error or error
                try:
                    item = updates.get_nowait()
                except queue.Empty:
                    break
            yield rows
    finally:
        for state in states:
            state.cancel.set()
    if first_error is not None:
        raise first_error


def inspect(handle: Any, engine: OpenAIEngine, ids: Sequence[int], params: SamplingParams) -> DistributionView:
    """The next-token distribution after `ids`, rebuilt from the server's top alternatives."""
    top = engine.next_alternatives(prompt_text(handle, ids))
    if not top:
        raise ServerError(
            f"the server at {engine.shown_url} returns no log-probabilities, so there is no distribution to show"
        )
    return topk_view.rebuild(top, params)


class RemoteEngine:
    """The server as an engine (pipelines/engine/engines.py): rows without an adapter, streamed over HTTP.

    `client` speaks the server's protocol (pipelines/engine/openai_engine.py); this class only
    answers what generation asks of every engine.
    """

    name = ENGINE

    def __init__(self, client: OpenAIEngine) -> None:
        self.client = client

    def __repr__(self) -> str:  # never the key
        return f"RemoteEngine({self.client.shown_url!r})"

    @property
    def server(self) -> Any:
        """What the start-up probe found (`openai_engine.Server`)."""
        return self.client.server

    def close(self) -> None:
        self.client.close()

    @property
    def capabilities(self) -> Capabilities:
        server = self.client.server
        return Capabilities(
            adapters=False,  # the app's adapters live here, not on the server
            batching=True,  # the server batches its requests itself
            exact_distribution=False,  # rebuilt from its top-K alternatives, marked where approximate
            unsupported=server.unsupported() if server is not None else {},
        )

    def stream(self, handle: Any, batch: Batch, should_stop: Stop) -> Iterator[list[Completion]]:
        return stream_rows(handle, self.client, batch.rows, batch.prompts, should_stop)

    def inspect(
        self, handle: Any, ids: Sequence[int], params: SamplingParams, *, adapter: str | None, top_n: int
    ) -> DistributionView:
        return inspect(handle, self.client, ids, params)
