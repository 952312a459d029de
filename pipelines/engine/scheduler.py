"""Continuous batching: one thread owns the model's decoding, and every request's rows join one batch.

Why: on a CPU a decode step is bound by reading the weights, so a step for 16 rows of the bundled
model costs ~3x a step for one (62 vs 19.5 ms here) while making 16 tokens. Before this module
every request took the model lock one forward pass at a time: concurrent requests interleaved but
never shared a pass, and 16 clients got less throughput in total than one alone.

How (the shape of vLLM's and nanochat's engines, on a CPU):

- A request is a list of rows (`generation._RowState`: a prompt, its own sampling settings, seed,
  stop strings, budget and alternatives). `submit` queues it; the caller's generator waits on the
  request and streams what the scheduler thread writes into its rows. Streaming stays the
  primitive: `generation.stream_batch` is the only caller, and the tabs do not know about batching.
- Each loop of the thread: drop rows whose request was stopped or whose client went away, prefill
  waiting rows (at most `PREFILL_CHUNK` prompt tokens while other rows decode, so a long prompt
  delays the running rows by a bounded slice instead of its whole prefill), then one decode step
  for every running row of a lane. A row leaves the batch the step it finishes.
- Rows of one request with the same prompt and adapter (the N samples of self-consistency, the
  2-4 responses of a preference comparison, Compare) prefill that prompt once; each row then
  samples its own first token from the shared logits and gets its own copy of the keys and values.
  Across requests, a prompt that starts like one read before (a lesson's system prompt) copies that
  part's keys and values and is fed from where it ends (pipelines/engine/prefix_cache.py, lean lane).
- Two lanes, each a batch of its own (pipelines/engine/batch_cache.py): base-model rows on the lean fp16
  decoder when it is built, and rows with adapters (or everything, when there is no lean decoder)
  on the transformers model, where rows with different LoRA adapters share a step through PEFT's
  mixed-batch inference. Prompt-tuning rows prefill with their virtual tokens and then decode as
  base-model rows of the transformers lane.
- At most `PLAYGROUND_BATCH_ROWS` rows run per lane; requests beyond wait in a queue of at most
  `PLAYGROUND_BATCH_QUEUE` requests, each told its position; one more is refused (`ServerBusy`).

The thread exits after a few idle seconds and is started again by the next request, so a
replaced model handle (tests, a model switch) is not kept alive by an idle thread. With batching
off (PLAYGROUND_BATCHING=0, always on ZeroGPU) each request gets a scheduler of its own that runs
in the caller's thread (`alone`): the same batch code and caches, one request at a time.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from pipelines.config import get_settings
from pipelines.engine.batch_cache import FastBatch, Prefill, TorchBatch, torch_batchable
from pipelines.engine.hardware import release_memory
from pipelines.engine.models import ModelHandle
from pipelines.errors import PlaygroundError

log = logging.getLogger(__name__)

PREFILL_CHUNK = 64  # prompt tokens per loop while rows decode: ~0.12 s here, two decode steps of 16 rows
IDLE_PREFILL_CHUNK = 512  # with nothing decoding there is nobody to stall
IDLE_EXIT_SECONDS = 5.0
WAIT_POLL_SECONDS = 0.1  # how often a waiting caller asks its `should_stop`
MIN_WAKE_SECONDS = 0.04  # a caller alone is woken for at most 25 updates a second
WAKES_PER_SECOND = 60.0  # all callers of a batch together: at most about this many wake-ups a second


class ServerBusy(PlaygroundError):
    """Every decoding slot is taken and the waiting queue is full: try again in a moment."""

    exit_code = 1


class RowState(Protocol):
    """What the scheduler needs of a row (generation._RowState)."""

    row: Any  # generation.Completion

    top_alternatives: int

    def advance(
        self,
        logits: torch.Tensor,
        logprobs: torch.Tensor | None = None,
        top: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> int: ...

    def cancel(self, started: float) -> None: ...


@dataclass(eq=False)
class Request:
    """One caller's rows on their way through the scheduler, and what the caller waits on."""

    states: list[RowState]
    adapters: list[str | None]
    prompt_tuning: list[bool]  # its adapter is prompt tuning: virtual tokens at prefill, base weights after
    lanes: list[str]
    pending: list[int]
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None  # when its first prompt token went in
    prefills: dict[tuple, Prefill] = field(default_factory=dict)
    cancelled: bool = False
    error: BaseException | None = None
    version: int = 0
    changed: threading.Event = field(default_factory=threading.Event)
    scheduler: Scheduler | None = None
    _woken: float = 0.0

    @property
    def finished(self) -> bool:
        return self.error is not None or all(s.row.done for s in self.states)

    def cancel(self) -> None:
        """Stop the request: its rows leave the batch at the next step (a no-op once finished)."""
        if not self.cancelled and not self.finished:
            self.cancelled = True
            if self.scheduler is not None:
                self.scheduler.wake()

    def touch(self, pace: float = 0.0) -> None:
        """A new version of the rows; the caller is woken at once, or (`pace`) at most every `pace` seconds.

        Every row of a running batch changes every step; waking every caller's thread every step
        would have them compete with the decode step for the interpreter (and for the two cores)
        to show updates no one can read that fast. News (a first token, an end, a new place in the
        queue) is never paced.
        """
        self.version += 1
        now = time.perf_counter()
        if not pace or now - self._woken >= pace:
            self._woken = now
            self.changed.set()

    def key(self, index: int) -> tuple:
        return (tuple(self.states[index].row.prompt_ids), self.adapters[index])


@dataclass(eq=False)
class _Slot:
    request: Request
    index: int
    token: int
    position: int
    adapter: str | None  # the adapter its decode steps use (None: base weights)

    @property
    def state(self) -> RowState:
        return self.request.states[self.index]


@dataclass(eq=False)
class _Lane:
    batch: Any  # FastBatch | TorchBatch
    slots: list[_Slot] = field(default_factory=list)


class Scheduler:
    """The one owner of a model handle's decoding; see the module docstring."""

    def __init__(self, handle: ModelHandle, max_rows: int, max_queue: int, *, inline: bool = False) -> None:
        self.handle = handle
        self.max_rows = max_rows
        self.max_queue = max_queue
        self.inline = inline  # no thread: the caller's `stream` runs the loop (see `alone`)
        self._cond = threading.Condition()
        self._waiting: deque[Request] = deque()
        self._lanes: dict[str, _Lane] = {}
        self._thread: threading.Thread | None = None
        self.steps = 0  # decode steps run (a test and the bench read it)
        self.max_batch = 0  # the most rows one decode step carried

    # --- the caller's side -----------------------------------------------------------------

    def lane_for(self, adapter: str | None) -> str:
        return "fast" if adapter is None and self.handle.fast_decoder is not None else "torch"

    def submit(self, states: Sequence[RowState], adapters: Sequence[str | None]) -> Request:
        """Queue a request's rows; refuses with `ServerBusy` when the queue is full.

        Runs in the caller's thread, so an unknown or unreadable adapter is refused there, and
        each adapter's kind is read from disk once instead of in the scheduler's loop.
        """
        tuned = {a: a is not None and self.handle.is_prompt_tuning(a) for a in set(adapters)}
        request = Request(
            states=list(states),
            adapters=list(adapters),
            prompt_tuning=[tuned[a] for a in adapters],
            lanes=[self.lane_for(a) for a in adapters],
            pending=list(range(len(states))),
            scheduler=self,
        )
        with self._cond:
            if len(self._waiting) >= self.max_queue:
                raise ServerBusy(
                    f"The model is busy: {len(self._waiting)} requests are already waiting for one of its "
                    f"{self.max_rows} decoding slots (PLAYGROUND_BATCH_QUEUE={self.max_queue}). Try again in a moment."
                )
            self._waiting.append(request)
            if self._thread is None and not self.inline:
                self._thread = threading.Thread(target=self._run, name="decode-scheduler", daemon=True)
                self._thread.start()
            self._cond.notify()
        return request

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def stream(self, request: Request, should_stop: Callable[[], bool] | None = None) -> Iterator[list[Any]]:
        """The request's rows after every change, until all are done; closing it cancels the request."""
        if self.inline:
            yield from self._drive(request, should_stop)
            return
        rows = [s.row for s in request.states]
        seen = -1
        try:
            while True:
                request.changed.wait(WAIT_POLL_SECONDS if should_stop is not None else 1.0)
                request.changed.clear()
                if should_stop is not None and not request.cancelled and should_stop():
                    request.cancel()
                finished = request.finished
                if request.error is not None:
                    raise request.error
                if request.version != seen:
                    seen = request.version
                    yield rows
                if finished:
                    return
        finally:
            request.cancel()  # a caller that stopped reading (a client gone) frees its slots

    def _drive(self, request: Request, should_stop: Callable[[], bool] | None) -> Iterator[list[Any]]:
        """Run the loop in the caller's thread until its one request is done (see `alone`)."""
        rows = [s.row for s in request.states]
        seen = -1
        try:
            while True:
                if should_stop is not None and not request.cancelled and should_stop():
                    request.cancel()
                self._loop_once()
                if request.error is not None:
                    raise request.error
                if request.version != seen:
                    seen = request.version
                    yield rows
                if request.finished:
                    return
        finally:
            request.cancel()
            self._lanes.clear()  # the request's keys and values go now, not when the scheduler is collected
            release_memory()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return sum(len(lane.slots) for lane in self._lanes.values())

    # --- the scheduler thread ----------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._waiting) or any(lane.slots for lane in self._lanes.values())

    def _run(self) -> None:
        worked = False
        while True:
            if worked and not self._busy():  # the batch drained: what its prompts used goes back to the system
                release_memory()
                worked = False
            with self._cond:
                if not self._busy():
                    self._cond.wait(IDLE_EXIT_SECONDS)
                    if not self._busy():
                        self._thread = None
                        self._lanes.clear()
                        return
            worked = True
            try:
                self._loop_once()
            except BaseException as error:  # never let one failure kill the only decoder
                log.exception("decode scheduler: a step failed; its requests get the error")
                self._fail_everything(error)

    def _loop_once(self) -> None:
        self._reap()
        decoding = any(lane.slots for lane in self._lanes.values())
        self._admit(PREFILL_CHUNK if decoding else IDLE_PREFILL_CHUNK)
        for name in list(self._lanes):
            if self._lanes[name].slots:
                self._step(name)

    def _lane(self, name: str) -> _Lane:
        lane = self._lanes.get(name)
        if lane is None:
            decoder = self.handle.fast_decoder
            batch = FastBatch(self.handle, decoder) if name == "fast" else TorchBatch(self.handle)
            lane = self._lanes[name] = _Lane(batch)
        return lane

    def _reap(self) -> None:
        """Rows of stopped requests leave now; stopped requests still waiting leave the queue."""
        for lane in self._lanes.values():
            if any(slot.request.cancelled for slot in lane.slots):
                keep = [i for i, slot in enumerate(lane.slots) if not slot.request.cancelled]
                gone_slots = [slot for slot in lane.slots if slot.request.cancelled]
                lane.batch.leave(keep)  # the slots are free before anyone is told
                lane.slots = [lane.slots[i] for i in keep]
                for slot in gone_slots:
                    self._cancel_row(slot.request, slot.index)
        with self._cond:
            gone = [r for r in self._waiting if r.cancelled]
            for request in gone:
                self._waiting.remove(request)
        for request in gone:
            for index in request.pending:
                self._cancel_row(request, index)
            request.pending.clear()
            request.prefills.clear()

    def _cancel_row(self, request: Request, index: int) -> None:
        state = request.states[index]
        if not state.row.done:
            state.cancel(request.started or request.submitted)
        request.touch()

    def _admit(self, budget: int) -> None:
        """Prefill waiting rows, first come first served, while slots and the token budget last.

        Short prompts waiting together go in as one left-padded pass (`_gather`); a long one is
        fed `budget` tokens per loop, between decode steps of the running rows.
        """
        while budget > 0:
            with self._cond:
                if not self._waiting:
                    break
                request = self._waiting[0]
            index = request.pending[0]
            lane = self._lane(request.lanes[index])
            if len(lane.slots) >= self.max_rows:
                break  # first come, first served: the head waits for its lane
            key = request.key(index)
            job = request.prefills.get(key)
            if job is None:
                job = request.prefills[key] = Prefill(list(key[0]), key[1])
            if not job.done:
                group = self._gather(request.lanes[index], lane, budget)
                try:
                    if len(group) > 1:
                        lane.batch.prefill_group([j for _, _, j in group])
                        budget -= len(group) * max(len(j.ids) for _, _, j in group)
                    else:
                        group = [(request, key, job)]
                        budget -= lane.batch.prefill(job, budget)
                except Exception as error:  # these requests' prompts or adapters, not the running batch
                    for failed in dict.fromkeys(r for r, _, _ in group):
                        self._fail(failed, error)
                    continue
                for member, member_key, member_job in group:
                    if member.started is None:
                        member.started = time.perf_counter()
                    if member_job.done and member.error is None:
                        self._join(member, member_key, member_job, lane)
                continue
            self._join(request, key, job, lane)
        self._tell_positions()

    def _gather(self, lane_name: str, lane: _Lane, budget: int) -> list[tuple[Request, tuple, Prefill]]:
        """The waiting prompts, in order, that can share one pass with the head's: fresh, short, same lane.

        Stops at the first that cannot (a long prompt, a prompt-tuning adapter, another lane), so
        nobody is overtaken; bounded by the free slots and the padded token budget.
        """
        free = self.max_rows - len(lane.slots)
        group: list[tuple[Request, tuple, Prefill]] = []
        width = 0
        with self._cond:
            waiting = list(self._waiting)
        for request in waiting:
            for index in request.pending:
                key = request.key(index)
                if any(r is request and k == key for r, k, _ in group):
                    continue
                job = request.prefills.get(key)
                if request.lanes[index] != lane_name or (job is not None and job.done_tokens) or free <= 0:
                    return group
                if request.prompt_tuning[index]:
                    return group
                # a prompt that starts like one already read is fed alone from where that one ends: cheaper than
                # reading it whole in a padded pass (pipelines/engine/prefix_cache.py)
                if lane.batch.reusable(key[0]):
                    return group
                wider = max(width, len(key[0]))
                if (len(group) + 1) * wider > budget:
                    return group
                if job is None:
                    job = request.prefills[key] = Prefill(list(key[0]), key[1])
                group.append((request, key, job))
                width = wider
                free -= sum(1 for i in request.pending if request.key(i) == key)
        return group

    def _join(self, request: Request, key: tuple, job: Prefill, lane: _Lane) -> None:
        """Every pending row of `request` with this prompt samples its first token; the unfinished join."""
        free = self.max_rows - len(lane.slots)
        chosen = [i for i in request.pending if request.key(i) == key][:free]
        joining: list[tuple[int, int]] = []
        assert job.logits is not None
        for index in chosen:
            request.pending.remove(index)
            state = request.states[index]
            state.row.queue_position = None
            try:
                token = state.advance(job.logits)
            except Exception as error:  # this row's sampling: its request ends, the batch goes on
                self._fail(request, error)
                return
            state.row.seconds = time.perf_counter() - (request.started or request.submitted)
            if not state.row.done:
                joining.append((index, token))
        if joining:
            lane.batch.join(job, len(joining))
            for index, token in joining:
                # a prompt-tuning row's virtual tokens are in the cache; its weights are the base's
                adapter = None if request.prompt_tuning[index] else request.adapters[index]
                lane.slots.append(_Slot(request, index, token, job.length, adapter))
        if not any(request.key(i) == key for i in request.pending):
            request.prefills.pop(key, None)
        if not request.pending:
            with self._cond:
                if request in self._waiting:
                    self._waiting.remove(request)
        request.touch()

    def _tell_positions(self) -> None:
        with self._cond:
            waiting = list(self._waiting)
        for position, request in enumerate(waiting):
            changed = False
            for index in request.pending:
                row = request.states[index].row
                if row.queue_position != position:
                    row.queue_position = position
                    changed = True
            if changed:
                request.touch()

    def _step(self, name: str) -> None:
        lane = self._lanes[name]
        slots = lane.slots
        try:
            logits = lane.batch.step([s.token for s in slots], [s.position for s in slots], [s.adapter for s in slots])
        except Exception as error:  # the batch's cache is in an unknown state: fail its rows, start afresh
            for request in dict.fromkeys(s.request for s in slots):
                self._fail(request, error)
            del self._lanes[name]
            return
        self.steps += 1
        self.max_batch = max(self.max_batch, len(slots))
        # what every row records, for all rows in one pass: log-probabilities at T = 1 and the alternatives
        logprobs = torch.log_softmax(logits, dim=-1)
        shown = max(s.state.top_alternatives for s in slots)
        top = torch.topk(logprobs, shown) if shown else None
        now = time.perf_counter()
        pace = max(MIN_WAKE_SECONDS, len(slots) / WAKES_PER_SECOND)
        keep = []
        wake: list[tuple[Request, float]] = []  # told after the batch is settled, so a woken caller sees it
        cancelled: list[_Slot] = []
        failed: dict[Request, BaseException] = {}
        for i, slot in enumerate(slots):
            request = slot.request
            if request.error is not None:
                continue
            if request.cancelled:
                cancelled.append(slot)
                continue
            if request in failed:
                continue
            try:
                slot.token = slot.state.advance(
                    logits[i], logprobs[i], None if top is None else (top.values[i], top.indices[i])
                )
            except Exception as error:  # this row's sampling: its request ends, the batch goes on
                failed[request] = error
                continue
            slot.position += 1
            row = slot.state.row
            row.seconds = now - (request.started or request.submitted)
            if not row.done:
                keep.append(i)
            wake.append((request, 0.0 if row.done else pace))
        keep = [i for i in keep if slots[i].request not in failed]
        lane.batch.leave(keep)
        lane.slots = [slots[i] for i in keep]
        for request, reason in failed.items():
            self._fail(request, reason)
        for slot in cancelled:
            self._cancel_row(slot.request, slot.index)
        for request, request_pace in wake:
            request.touch(request_pace)
        unused = lane.batch.unused_columns()
        if unused >= max(64, lane.batch.end // 2):
            lane.batch.compact(unused)

    def _fail(self, request: Request, error: BaseException) -> None:
        """End one request with `error` (raised in its caller); its other rows leave the batch."""
        with self._cond:
            if request in self._waiting:
                self._waiting.remove(request)
        for lane in self._lanes.values():
            if any(slot.request is request for slot in lane.slots):
                keep = [i for i, slot in enumerate(lane.slots) if slot.request is not request]
                lane.batch.leave(keep)
                lane.slots = [lane.slots[i] for i in keep]
        request.error = error
        request.touch()

    def _fail_everything(self, error: BaseException) -> None:
        with self._cond:
            requests = list(self._waiting)
            self._waiting.clear()
        for lane in self._lanes.values():
            requests += [slot.request for slot in lane.slots]
        self._lanes.clear()
        for request in dict.fromkeys(requests):
            request.error = error
            request.touch()


_lock = threading.Lock()
_schedulers: weakref.WeakSet[Scheduler] = weakref.WeakSet()


def rows_in_flight() -> int:
    """Rows decoding or waiting for a slot on every scheduler of this process (the UI paces itself by it)."""
    return sum(s.running + sum(len(r.pending) for r in list(s._waiting)) for s in list(_schedulers))


def for_handle(handle: ModelHandle) -> Scheduler | None:
    """The handle's scheduler, or None where requests decode on their own (see `usable`)."""
    if not usable(handle):
        return None
    with _lock:
        if handle.scheduler is None:
            settings = get_settings()
            handle.scheduler = Scheduler(handle, settings.batch_rows, settings.batch_queue)
            _schedulers.add(handle.scheduler)
        return handle.scheduler


def usable(handle: ModelHandle) -> bool:
    """Batching is on and the model's cache can be edited row by row."""
    return get_settings().batching and editable(handle)


def editable(handle: ModelHandle) -> bool:
    """Rows can join and leave this model's cache: the lean decoder's, or a plain per-layer transformers cache."""
    return handle.fast_decoder is not None or torch_batchable(handle)


def alone(handle: ModelHandle, rows: int) -> Scheduler:
    """A scheduler of one request, run in the caller's thread: with batching off (ZeroGPU runs the
    model only inside the caller's GPU task) a request still decodes on the same batch code and caches."""
    return Scheduler(handle, max_rows=max(1, rows), max_queue=1, inline=True)
