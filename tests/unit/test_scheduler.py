"""Continuous batching (pipelines/engine/scheduler.py) on the tiny fp32 model: rows join and leave a running
batch, each keeps its own settings, stopped or abandoned rows free their slot, the queue is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.engine import generation, models, scheduler
from pipelines.engine.sampling import SamplingParams

LONG = SamplingParams(temperature=0.8, top_k=40, seed=11, max_new_tokens=300)
# every knob a row can carry, different per row
SETTINGS = [
    SamplingParams(temperature=0, max_new_tokens=25),
    SamplingParams(temperature=1.1, top_p=0.9, seed=3, max_new_tokens=18),
    SamplingParams(temperature=0.7, min_p=0.05, repetition_penalty=1.3, seed=5, max_new_tokens=30),
    SamplingParams(temperature=0.9, top_k=5, seed=7, max_new_tokens=12, stop=("e",)),
]
PROMPTS = [
    "The quick brown fox",
    "Once upon a time, in a land",
    "Hi",
    "A much longer prompt that has many more tokens in it",
]


@pytest.fixture
def handle(tokenizer):
    """A tiny model of its own with a scheduler of known size (2 slots would starve the tests)."""
    from tests.helpers import build_tiny_model

    h = models.wrap(build_tiny_model(tokenizer), tokenizer, name="tiny-llama", source="in-process")
    h.scheduler = scheduler.Scheduler(h, max_rows=8, max_queue=4)
    return h


def _until(condition, seconds: float = 20.0) -> None:
    """Wait for a state of the scheduler thread (a liveness bound, not a speed assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the scheduler did not get there"
        time.sleep(0.005)


def _in_background(handle, prompt, params) -> tuple[threading.Thread, list]:
    """A request decoding in its own thread, and the list its latest rows are kept in."""
    latest: list = []

    def run() -> None:
        for rows in generation.stream_batch(handle, [prompt], [params], ignore_eos=True):
            latest[:] = rows

    thread = threading.Thread(target=run)
    thread.start()
    return thread, latest


def _alone(handle, prompt, params, **kwargs):
    return generation.generate(handle, prompt, params, ignore_eos=True, **kwargs).completion_ids


def test_rows_joining_mid_flight_decode_as_they_would_alone(handle):
    alone = [_alone(handle, p, s) for p, s in zip(PROMPTS, SETTINGS, strict=False)]
    long_alone = _alone(handle, PROMPTS[0], LONG)
    results: dict[int, list[int]] = {}
    runner, long_rows = _in_background(handle, PROMPTS[0], LONG)
    _until(lambda: long_rows and len(long_rows[0].tokens) >= 5)  # decoding: the others join it
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, _alone(handle, PROMPTS[i], SETTINGS[i])))
        for i in range(len(PROMPTS))
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.01)  # arrive at different steps
    for thread in threads + [runner]:
        thread.join()
    assert [results[i] for i in range(len(PROMPTS))] == alone
    assert long_rows[0].completion_ids == long_alone
    assert handle.scheduler.max_batch >= 3  # they really shared steps
    assert handle.scheduler.running == 0 and handle.scheduler.waiting == 0


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps(handle, monkeypatch):
    from pipelines.engine import batch_cache

    events: list[str] = []
    prefill, step = batch_cache.TorchBatch.prefill, batch_cache.TorchBatch.step
    monkeypatch.setattr(batch_cache.TorchBatch, "prefill", lambda s, j, b: events.append("p") or prefill(s, j, b))
    monkeypatch.setattr(batch_cache.TorchBatch, "step", lambda s, *a: events.append("s") or step(s, *a))
    monkeypatch.setattr(scheduler, "PREFILL_CHUNK", 16)
    long_prompt = " ".join(f"word{i}" for i in range(60))  # well over 16 tokens
    greedy = SamplingParams(temperature=0, max_new_tokens=10)
    expected = _alone(handle, long_prompt, greedy)
    events.clear()
    runner, running = _in_background(handle, PROMPTS[0], LONG)
    _until(lambda: running and len(running[0].tokens) >= 2)
    assert _alone(handle, long_prompt, greedy) == expected  # chunked prefill changes nothing
    runner.join()
    chunks = [i for i, e in enumerate(events) if e == "p"]
    assert len(chunks) >= 4  # 60+ tokens in chunks of 16
    # the running row kept decoding while the long prompt went in
    assert "s" in events[chunks[0] : chunks[-1]]


def test_a_stopped_row_frees_its_slot_at_once(handle):
    stop = threading.Event()
    last = None
    for last in generation.stream(handle, PROMPTS[0], LONG, ignore_eos=True, should_stop=stop.is_set):
        if last.tokens:
            stop.set()
    assert last.finish_reason == "cancelled" and 0 < len(last.tokens) < LONG.max_new_tokens
    assert handle.scheduler.running == 0  # gone when the stream ends, not when its budget would have


def test_a_client_that_goes_away_frees_its_slot(handle):
    stream = generation.stream(handle, PROMPTS[0], LONG, ignore_eos=True)
    first = next(stream)
    assert handle.scheduler.running == 1
    stream.close()  # what Gradio does with the generator of a client that disconnected
    _until(lambda: handle.scheduler.running == 0)
    assert first.finish_reason == "cancelled" and len(first.tokens) < LONG.max_new_tokens


def test_the_samples_of_one_prompt_prefill_it_once(handle):
    calls = []
    original = handle.forward
    handle.forward = lambda *a, **k: calls.append(k.get("input_ids")) or original(*a, **k)
    try:
        params = [SamplingParams(temperature=1.0, seed=s, max_new_tokens=8) for s in range(4)]
        rows = generation.generate_batch(handle, [PROMPTS[1]] * 4, params, ignore_eos=True)
    finally:
        del handle.forward
    prompt_len = len(rows[0].prompt_ids)
    prefills = [ids for ids in calls if ids is not None and ids.shape[-1] == prompt_len]
    assert len(prefills) == 1 and prefills[0].shape[0] == 1  # one row of the prompt, not four
    assert len(calls) == 8  # then one batched step per further token
    assert len({tuple(r.completion_ids) for r in rows}) > 1  # each sample drew its own tokens


def test_the_queue_is_bounded_and_says_where_you_are(handle):
    handle.scheduler = scheduler.Scheduler(handle, max_rows=1, max_queue=1)
    holder = generation.stream(handle, PROMPTS[0], LONG, ignore_eos=True)
    next(holder)  # holds the only slot
    waiting = generation.stream(handle, PROMPTS[1], SETTINGS[0], ignore_eos=True)
    queued = next(waiting)
    assert queued.queue_position == 0 and not queued.tokens
    with pytest.raises(scheduler.ServerBusy, match="PLAYGROUND_BATCH_QUEUE=1"):
        next(generation.stream(handle, PROMPTS[2], SETTINGS[0], ignore_eos=True))
    holder.close()  # the slot frees, the waiting request runs to the end
    rows = list(waiting)
    assert rows[-1].finish_reason == "length" and rows[-1].queue_position is None


def test_the_generate_tab_shows_the_place_in_the_queue(handle, monkeypatch):
    from playground import generate

    handle.scheduler = scheduler.Scheduler(handle, max_rows=1, max_queue=4)
    models.set_handle(handle)
    try:
        holder = generation.stream(handle, PROMPTS[0], LONG, ignore_eos=True)
        next(holder)
        from tests.helpers import SAMPLING_DEFAULTS

        updates = generate.run_generation("Hello", **{**SAMPLING_DEFAULTS, "temperature": 0, "max_new_tokens": 4})
        text, stats, _ = next(updates)
        assert text == "" and "Waiting for a free slot on the model (you are next)" in stats
        holder.close()
        *_, (text, stats, _) = updates
        assert text and "finished" in stats
    finally:
        models.set_handle(None)


def test_with_batching_off_a_request_decodes_alone_on_the_same_batch_code(handle, monkeypatch):
    """ZeroGPU turns batching off: each request runs its own scheduler in the caller's thread (no
    second KV-cache implementation), and gives the rows the shared scheduler gives."""
    batched = generation.generate_batch(handle, PROMPTS, SETTINGS, ignore_eos=True)
    monkeypatch.setattr(scheduler, "usable", lambda h: False)
    handle.scheduler = None
    made: list[scheduler.Scheduler] = []
    real_alone = scheduler.alone
    monkeypatch.setattr(scheduler, "alone", lambda h, rows: made.append(real_alone(h, rows)) or made[-1])
    threads_before = {t.name for t in threading.enumerate()}
    alone = generation.generate_batch(handle, PROMPTS, SETTINGS, ignore_eos=True)
    assert [r.completion_ids for r in alone] == [r.completion_ids for r in batched]
    assert [r.text for r in alone] == [r.text for r in batched]
    assert len(made) == 1 and made[0].inline and made[0].steps > 0 and made[0].max_batch == len(PROMPTS)
    assert made[0]._lanes == {}  # the caches went with the request
    assert "decode-scheduler" not in {t.name for t in threading.enumerate()} - threads_before
    stopped = generation.generate(handle, PROMPTS[0], LONG, should_stop=iter([False] * 4 + [True] * 999).__next__)
    assert stopped.finish_reason == "cancelled" and 0 < len(stopped.tokens) < LONG.max_new_tokens


def test_a_cache_the_batch_cannot_edit_decodes_in_lock_step_with_the_same_rows(handle, monkeypatch):
    """Sliding-window and hybrid caches cannot let rows join and leave: such a model decodes each
    request on transformers' own cache, and the rows are the ones the batch gives."""
    batched = generation.generate_batch(handle, PROMPTS, SETTINGS, ignore_eos=True)
    monkeypatch.setattr(scheduler, "editable", lambda h: False)
    monkeypatch.setattr(scheduler, "usable", lambda h: False)
    handle.scheduler = None
    monkeypatch.setattr(scheduler, "alone", lambda h, rows: pytest.fail("no batch for an uneditable cache"))
    lockstep = generation.generate_batch(handle, PROMPTS, SETTINGS, ignore_eos=True)
    assert [r.completion_ids for r in lockstep] == [r.completion_ids for r in batched]


def test_the_engine_is_chosen_in_one_place():
    """No per-engine hooks on the model handle: generation asks `engine_for`, and every engine
    answers the one protocol (pipelines/engine/engines.py)."""
    from pipelines.engine import engines, llamacpp_engine, remote_stream

    for hook in ("fast_decoder_for", "llamacpp_for", "remote_for", "llamacpp", "remote"):
        assert not hasattr(models.ModelHandle, hook), hook
    for engine in (generation.LocalEngine, llamacpp_engine.LlamaCppEngine, remote_stream.RemoteEngine):
        for member in ("name", "capabilities", "stream", "inspect"):
            assert hasattr(engine, member), (engine, member)
    assert not hasattr(generation, "_stream_fast") and not hasattr(generation, "_stream_llamacpp")
    assert isinstance(generation.LOCAL, engines.Engine)
