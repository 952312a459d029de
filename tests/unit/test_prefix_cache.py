"""Prompts that start like one read before reuse its keys and values (pipelines/engine/prefix_cache.py):
the same tokens come out, fewer prompt tokens go in, and the cache stays within its bytes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipelines.engine import fast_decode, generation, models
from pipelines.engine.prefix_cache import MIN_TOKENS, PrefixCache
from pipelines.engine.sampling import SamplingParams
from tests.helpers import build_tiny_model

pytestmark = pytest.mark.skipif(
    fast_decode.unsupported_reason(torch.nn.Module()) == "this torch build has no fbgemm fp16 kernels",
    reason="torch without fbgemm",
)

SHARED = "You are a patient teacher of a workshop on language models. " * 6  # a long shared system prompt
QUESTIONS = ["What is a token?", "Why does temperature change the text?", "What does top-p keep?"]


def _kv(length: int, value: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((1, 2, length, 4), value), torch.full((1, 2, length, 4), value)) for _ in range(3)]


def test_the_longest_shared_prefix_is_found_and_the_last_token_is_always_fed():
    cache = PrefixCache(max_bytes=10**9)
    first = list(range(100))
    cache.add(first, _kv(100, 1.0))
    reused, kv = cache.longest(first[:60] + [999] * 10)
    assert reused == 60 and kv is not None and float(kv[0][0][0, 0, 59, 0]) == 1.0
    assert cache.longest(first)[0] == 99  # the whole prompt again: its last token still goes in
    assert cache.longest(first[: MIN_TOKENS - 1] + [999] * 40) == (0, None)  # too short to be worth it
    assert cache.longest([999] * 50) == (0, None)
    assert cache.hits == 2 and cache.reused_tokens == 159


def test_an_entry_another_extends_is_dropped_and_a_contained_one_is_not_added():
    cache = PrefixCache(max_bytes=10**9)
    cache.add(list(range(50)), _kv(50))
    cache.add(list(range(80)), _kv(80))  # extends the first: one entry serves both
    assert len(cache) == 1 and cache.longest(list(range(50)) + [7])[0] == 50
    cache.add(list(range(40)), _kv(40))  # already held
    assert len(cache) == 1


def test_it_is_bounded_by_bytes_least_recently_used_out_first():
    one = sum(k.numel() * 4 * 2 for k, _ in _kv(40))
    cache = PrefixCache(max_bytes=2 * one)
    a, b, c = ([i] * 40 for i in (1, 2, 3))
    cache.add(a, _kv(40))
    cache.add(b, _kv(40))
    assert cache.longest(a + [0])[0] == 40  # a was used: b is now the oldest
    cache.add(c, _kv(40))
    assert len(cache) == 2 and cache.nbytes <= 2 * one
    assert cache.longest(b + [0]) == (0, None) and cache.longest(a + [0])[0] == 40
    off = PrefixCache(max_bytes=0)
    off.add(a, _kv(40))
    assert len(off) == 0 and off.longest(a + [0]) == (0, None)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_model(tokenizer, seed=5).eval()


def _handle(model, tokenizer, decoder):
    handle = models.wrap(model, tokenizer, name="tiny-fast", source="in-process")
    handle.fast_decoder = decoder
    return handle


def test_requests_sharing_a_system_prompt_read_it_once_and_answer_the_same(model, tokenizer, data_dir):
    decoder = fast_decode.FastDecoder.build(model)
    without = dataclasses.replace(decoder, prefixes=PrefixCache(max_bytes=0))  # the same weights, no reuse
    settings = [
        SamplingParams(temperature=0, max_new_tokens=20),
        SamplingParams(temperature=0.9, seed=4, max_new_tokens=20),
    ]
    prompts = [SHARED + q for q in QUESTIONS]
    cached = _handle(model, tokenizer, decoder)
    plain = _handle(model, tokenizer, without)
    shared_tokens = len(tokenizer(SHARED)["input_ids"])
    for params in settings:
        for prompt in prompts:
            got = generation.generate(cached, prompt, params, ignore_eos=True)
            expected = generation.generate(plain, prompt, params, ignore_eos=True)
            assert got.engine == generation.FAST_ENGINE
            assert got.completion_ids == expected.completion_ids
    # every prompt but the very first found the shared part already read
    assert decoder.prefixes.hits == len(settings) * len(prompts) - 1
    assert decoder.prefixes.reused_tokens >= (decoder.prefixes.hits) * (shared_tokens - 2)
    assert without.prefixes.hits == 0 and len(without.prefixes) == 0


def test_prompts_waiting_together_are_fed_from_the_shared_part_not_read_whole_in_one_pass(model, tokenizer, data_dir):
    """Short prompts waiting together normally share one left-padded pass that reads each whole; those that
    start like a prompt already read are fed alone from where it ends instead."""
    decoder = fast_decode.FastDecoder.build(model)
    without = dataclasses.replace(decoder, prefixes=PrefixCache(max_bytes=0))
    greedy = [SamplingParams(temperature=0, max_new_tokens=12)] * len(QUESTIONS)
    prompts = [SHARED + q for q in QUESTIONS]
    cached = _handle(model, tokenizer, decoder)
    generation.generate(cached, SHARED + "Hello", greedy[0], ignore_eos=True)  # the class's first request
    rows = generation.generate_batch(cached, prompts, greedy, ignore_eos=True)
    expected = generation.generate_batch(_handle(model, tokenizer, without), prompts, greedy, ignore_eos=True)
    assert [r.completion_ids for r in rows] == [r.completion_ids for r in expected]
    assert decoder.prefixes.hits == len(QUESTIONS)


def test_an_adapter_row_never_uses_the_base_models_cache(model, tokenizer, data_dir):
    """The cache lives on the lean decoder, which serves only the base model: an adapter's keys differ."""
    from tests.helpers import make_lora_adapter

    make_lora_adapter(tokenizer, data_dir / "adapters", "teacher")
    decoder = fast_decode.FastDecoder.build(model)
    handle = _handle(model, tokenizer, decoder)
    greedy = SamplingParams(temperature=0, max_new_tokens=8)
    generation.generate(handle, SHARED + QUESTIONS[0], greedy, ignore_eos=True)
    hits = decoder.prefixes.hits
    row = generation.generate(handle, SHARED + QUESTIONS[1], greedy, ignore_eos=True, adapter="teacher")
    assert row.engine != generation.FAST_ENGINE and decoder.prefixes.hits == hits
