"""The streaming decode loop on a tiny random model with the real tokenizer."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipelines.engine import generation, models
from pipelines.engine.generation import _Detokenizer
from pipelines.engine.sampling import InvalidParameter, SamplingParams

PROMPT = "The quick brown fox"


def test_greedy_matches_transformers_generate(tiny_handle):
    params = SamplingParams(temperature=0, max_new_tokens=12)
    ours = generation.generate(tiny_handle, PROMPT, params, ignore_eos=True)
    ids = tiny_handle.tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        out = tiny_handle.model.generate(**ids, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert ours.completion_ids == out[0, ids.input_ids.shape[1] :].tolist()


def test_same_seed_same_text_different_seed_different_text(tiny_handle):
    params = SamplingParams(temperature=1.0, max_new_tokens=20, seed=123)
    a = generation.generate(tiny_handle, PROMPT, params, ignore_eos=True)
    b = generation.generate(tiny_handle, PROMPT, params, ignore_eos=True)
    c = generation.generate(tiny_handle, PROMPT, params.with_seed(124), ignore_eos=True)
    assert a.completion_ids == b.completion_ids and a.text == b.text
    assert a.completion_ids != c.completion_ids
    assert a.seed == 123


def test_random_seed_is_reported_and_replays(tiny_handle):
    params = SamplingParams(temperature=1.0, max_new_tokens=10)
    first = generation.generate(tiny_handle, PROMPT, params, ignore_eos=True)
    replay = generation.generate(tiny_handle, PROMPT, params.with_seed(first.seed), ignore_eos=True)
    assert replay.completion_ids == first.completion_ids


def test_length_finish_and_token_records(tiny_handle):
    c = generation.generate(
        tiny_handle, PROMPT, SamplingParams(temperature=0.8, max_new_tokens=7, seed=1), ignore_eos=True
    )
    assert c.finish_reason == "length" and len(c.tokens) == 7
    for record in c.tokens:
        assert record.logprob <= 0 and 0 < record.sampled_prob <= 1
        assert len(record.top) == generation.TOP_ALTERNATIVES
        assert record.top[0]["logprob"] >= record.logprob  # the top alternative is at least as likely
    data = c.to_json()
    assert set(data) >= {"text", "tokens", "finish_reason", "tokens_per_second"}
    assert data["tokens"][0].keys() >= {"token", "id", "logprob", "top"}


def test_streaming_grows_monotonically(tiny_handle):
    texts = [
        c.text
        for c in generation.stream(
            tiny_handle, PROMPT, SamplingParams(temperature=0, max_new_tokens=15), ignore_eos=True
        )
    ]
    # updates are coalesced while the caller reads (the scheduler runs ahead), never reordered
    assert (
        texts
        and texts[-1]
        == generation.generate(
            tiny_handle, PROMPT, SamplingParams(temperature=0, max_new_tokens=15), ignore_eos=True
        ).text
    )
    for before, after in zip(texts, texts[1:], strict=False):
        assert after.startswith(before)


def test_stop_string_truncates_and_is_never_streamed(tiny_handle):
    base = generation.generate(tiny_handle, PROMPT, SamplingParams(temperature=0, max_new_tokens=30), ignore_eos=True)
    assert len(base.text) > 12
    stop = base.text[8:12]
    expected = base.text[: base.text.find(stop)]
    params = SamplingParams(temperature=0, max_new_tokens=30, stop=(stop,))
    streamed = [c.text for c in generation.stream(tiny_handle, PROMPT, params, ignore_eos=True)]
    assert streamed[-1] == expected
    assert all(stop not in t for t in streamed)
    final = generation.generate(tiny_handle, PROMPT, params, ignore_eos=True)
    assert final.finish_reason == "stop"


def test_eos_finishes(tiny_handle):
    first = generation.generate(tiny_handle, PROMPT, SamplingParams(temperature=0, max_new_tokens=3), ignore_eos=True)
    # Declare the token greedy decoding picks third as end-of-sequence.
    handle = dataclasses.replace(tiny_handle)
    eos_id = first.completion_ids[2]
    handle_eos = type(handle).eos_token_ids
    try:
        type(handle).eos_token_ids = property(lambda self: frozenset({eos_id}))
        c = generation.generate(handle, PROMPT, SamplingParams(temperature=0, max_new_tokens=10))
    finally:
        type(handle).eos_token_ids = handle_eos
    assert c.finish_reason == "eos"
    assert c.completion_ids == first.completion_ids[:2]


def test_batch_rows_equal_single_runs(tiny_handle):
    prompts = [PROMPT, "A much longer prompt that needs left padding in the batch"]
    params = [
        SamplingParams(temperature=0, max_new_tokens=8),
        SamplingParams(temperature=1.0, seed=9, max_new_tokens=8),
    ]
    rows = generation.generate_batch(tiny_handle, prompts, params, ignore_eos=True)
    for prompt, p, row in zip(prompts, params, rows, strict=False):
        single = generation.generate(tiny_handle, prompt, p, ignore_eos=True)
        assert row.completion_ids == single.completion_ids


def test_context_window_is_enforced(tokenizer):
    from tests.helpers import build_tiny_model

    handle = models.wrap(build_tiny_model(tokenizer, max_positions=64), tokenizer, name="tiny-64")
    long_prompt = "word " * 80
    with pytest.raises(InvalidParameter) as info:
        generation.generate(handle, long_prompt, SamplingParams(max_new_tokens=5))
    assert info.value.param == "prompt" and "context window" in str(info.value)
    near_full = tokenizer.decode(tokenizer("word " * 60)["input_ids"][:60])
    c = generation.generate(handle, near_full, SamplingParams(temperature=0, max_new_tokens=50), ignore_eos=True)
    assert c.finish_reason == "length" and len(c.prompt_ids) + len(c.tokens) == 64


def test_empty_and_oversized_prompts_are_refused(tiny_handle):
    for bad in ["", "   \n"]:
        with pytest.raises(InvalidParameter, match="prompt"):
            generation.generate(tiny_handle, bad, SamplingParams())
    with pytest.raises(InvalidParameter, match="prompt"):
        generation.generate(tiny_handle, "x" * (generation.MAX_PROMPT_CHARS + 1), SamplingParams())


def test_cancel_stops_promptly(tiny_handle):
    steps = 0

    def should_stop():
        return steps >= 3

    for c in generation.stream(  # noqa: B007 - the last update is checked below
        tiny_handle, PROMPT, SamplingParams(max_new_tokens=400), should_stop=should_stop, ignore_eos=True
    ):
        steps += 1
    # the scheduler decodes while the caller reads, so a few more tokens than 3 may be made
    assert c.finish_reason == "cancelled" and 3 <= len(c.tokens) < 400


def test_detokenizer_never_splits_characters(tokenizer):
    text = "Grüße 😀 — naïve café 你好"
    detok = _Detokenizer(tokenizer)
    for token_id in tokenizer(text, add_special_tokens=False)["input_ids"]:
        detok.push(token_id)
        assert "\ufffd" not in detok.text
    detok.flush()
    assert detok.text == text


def test_inspector_uses_the_sampling_functions(tiny_handle):
    ids = generation.encode(tiny_handle, PROMPT)
    params = SamplingParams(temperature=0.7, top_k=5)
    view = generation.inspect_next_token(tiny_handle, ids, params, top_n=10)
    kept = [r for r in view.rows if not r.cut_by]
    assert len(kept) == 5 and view.kept_tokens == 5
    assert sum(r.final_prob for r in kept) == pytest.approx(1.0, abs=1e-5)
    # the token greedy decoding picks is the inspector's most likely one
    greedy = generation.generate(tiny_handle, PROMPT, SamplingParams(temperature=0, max_new_tokens=1), ignore_eos=True)
    assert max(view.rows, key=lambda r: r.raw_prob).id == greedy.completion_ids[0]


def test_concurrent_streams_match_sequential_runs(tiny_handle):
    """One shared model, several threads: per-step locking interleaves streams without mixing them."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(f"Prompt number {i}", SamplingParams(temperature=1.0, seed=i, max_new_tokens=12)) for i in range(6)]
    expected = [generation.generate(tiny_handle, p, s, ignore_eos=True).completion_ids for p, s in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(lambda job: generation.generate(tiny_handle, *job, ignore_eos=True).completion_ids, jobs)
        )
    assert results == expected
