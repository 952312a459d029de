"""The one engine interface: what generation asks of whatever decodes its rows.

Three engines implement it (the shape of vLLM's `EngineClient` and nanochat's `Engine`):

- the local engine (`generation.LocalEngine`): the transformers model and its lean fp16 decoder,
  every request's rows in the continuous-batching scheduler (`scheduler.py`);
- llama.cpp (`llamacpp_engine.LlamaCppEngine`): a `LogitsEngine` over the GGUF file, one sequence
  at a time;
- an OpenAI-compatible server (`remote_stream.RemoteEngine`): rows streamed over HTTP.

Each says what it can do in `Capabilities`, and `generation.stream_batch` picks the engine for a
request once (`generation.engine_for`): the configured engine serves the rows it can (today: rows
without an adapter), the local model the rest. Tokenizing, sampling, stop strings and
log-probabilities stay shared (`generation._RowState`), so a request means the same on every engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from pipelines.engine.completion import Completion
from pipelines.engine.sampling import DistributionView, SamplingParams, inspect_distribution

Stop = Callable[[], bool] | None
ModelHandle = Any  # pipelines.engine.models.ModelHandle (which imports the engines, so not imported here)


@dataclass(frozen=True)
class Capabilities:
    """What an engine can serve; the UI and `engine_for` read it instead of asking which engine it is."""

    adapters: bool  # runs the app's LoRA and prompt-tuning adapters
    batching: bool  # rows of different requests share a decoding step
    exact_distribution: bool  # the inspector shows the whole next-token distribution (else rebuilt from top-K)
    unsupported: Mapping[str, str] = field(default_factory=dict)  # sampling knob -> why it is not honoured


class RowState(Protocol):
    """A row being decoded (generation._RowState): its completion, its ids, one step of sampling."""

    row: Completion
    ids: list[int]

    def advance(self, logits: torch.Tensor, *args: Any) -> int: ...

    def cancel(self, started: float) -> None: ...


@dataclass
class Batch:
    """One request's rows, ready to decode: prompts encoded, seeds drawn, budgets fitted to the window."""

    prompts: Sequence[Any]  # as the caller gave them (a remote server gets chat messages as messages)
    rows: list[Completion]
    states: list[Any]  # RowState per row
    adapters: list[str | None]  # one per row


@runtime_checkable
class Engine(Protocol):
    """What decodes rows. `stream` yields the batch's rows after every change, until all are done."""

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    def stream(self, handle: ModelHandle, batch: Batch, should_stop: Stop) -> Iterator[list[Completion]]: ...

    def inspect(
        self, handle: ModelHandle, ids: Sequence[int], params: SamplingParams, *, adapter: str | None, top_n: int
    ) -> DistributionView: ...


def stopped(should_stop: Stop, states: Sequence[Any], started: float) -> bool:
    """Whether the caller asked to stop; if so every unfinished row is marked cancelled."""
    if should_stop is None or not should_stop():
        return False
    for state in states:
        if not state.row.done:
            state.cancel(started)
    return True


class LogitsEngine:
    """An engine that holds one sequence and answers next-token logits (llama.cpp's context).

    Rows decode one after another; every token goes through the shared sampling of its row, so the
    stream is the one torch would give for the same logits. Subclasses supply `next_logits`.
    """

    name = "logits"
    capabilities = Capabilities(adapters=False, batching=False, exact_distribution=True)

    def next_logits(self, ids: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def stream(self, handle: ModelHandle, batch: Batch, should_stop: Stop) -> Iterator[list[Completion]]:
        for row in batch.rows:
            row.engine = self.name
        for state in batch.states:
            started = time.perf_counter()
            while not state.row.done:
                if stopped(should_stop, batch.states, started):
                    yield batch.rows
                    return
                state.advance(self.next_logits(state.ids))
                state.row.seconds = time.perf_counter() - started
                yield batch.rows

    def inspect(
        self, handle: ModelHandle, ids: Sequence[int], params: SamplingParams, *, adapter: str | None, top_n: int
    ) -> DistributionView:
        tokenizer = handle.tokenizer
        return inspect_distribution(
            self.next_logits(ids),
            params,
            torch.tensor(list(ids), dtype=torch.long),
            lambda i: tokenizer.decode([i], skip_special_tokens=False),
            top_n=top_n,
        )
