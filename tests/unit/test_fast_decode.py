"""The lean fp16 decoder: same logits as transformers (to fp16 weight rounding), same rows, same controls."""

from __future__ import annotations

import pytest
import torch

from pipelines.engine import fast_decode, generation, models
from pipelines.engine.sampling import SamplingParams
from tests.helpers import build_tiny_model

pytestmark = pytest.mark.skipif(
    fast_decode.unsupported_reason(torch.nn.Module()) == "this torch build has no fbgemm fp16 kernels",
    reason="torch without fbgemm",
)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_model(tokenizer, seed=3).eval()


@pytest.fixture(scope="module")
def decoder(model):
    return fast_decode.FastDecoder.build(model)


@pytest.fixture
def fast_handle(model, decoder, tokenizer):
    handle = models.wrap(model, tokenizer, name="tiny-fast", source="in-process")
    handle.fast_decoder = decoder
    return handle


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # fp16 weights: ~5e-4 relative per weight; the logits of the scaled tiny head span about +-10
    assert (a - b).abs().max() <= 2e-3 * b.abs().max() + 1e-4, float((a - b).abs().max())


def test_it_is_torchscript_here(decoder):
    assert decoder.scripted  # the eager fallback gives the same numbers but is ~1.6x slower


def test_prefill_and_steps_match_transformers(model, decoder):
    ids = torch.randint(3, model.config.vocab_size, (1, 14), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = model(ids).logits
        cache = decoder.new_cache(1, 16)
        _close(decoder.forward(ids[:, :9], torch.arange(9)[None], 0, cache), reference[:, 8])
        for t in range(9, 14):
            _close(decoder.forward(ids[:, t : t + 1], torch.tensor([[t]]), t, cache), reference[:, t])
        with pytest.raises(ValueError, match="KV cache holds 16 positions"):
            decoder.forward(ids, torch.arange(14)[None], 14, cache)


def test_left_padded_rows_equal_the_rows_alone(model, decoder):
    short, long = torch.tensor([[5, 6, 7]]), torch.tensor([[8, 9, 10, 11, 12, 13, 14]])
    padded = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    key_mask = torch.ones(2, 9, dtype=torch.bool)
    key_mask[0, :4] = False
    positions = (key_mask[:, :7].long().cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        cache = decoder.new_cache(2, 9)
        first = decoder.forward(padded, positions, 0, cache, key_mask)
        assert torch.isfinite(first).all()
        _close(first[0], model(short).logits[0, -1])
        _close(first[1], model(long).logits[0, -1])
        nxt = torch.tensor([[20], [21]])
        second = decoder.forward(nxt, positions[:, -1:] + 1, 7, cache, key_mask)
        _close(second[0], model(torch.cat([short, nxt[:1]], 1)).logits[0, -1])
        _close(second[1], model(torch.cat([long, nxt[1:]], 1)).logits[0, -1])


def test_generation_uses_it_for_the_base_model_only(fast_handle, tokenizer, data_dir):
    from tests.helpers import make_lora_adapter

    params = SamplingParams(temperature=0, max_new_tokens=12)
    fast = generation.generate(fast_handle, "Once upon a time", params, ignore_eos=True)
    assert fast.engine == generation.FAST_ENGINE
    decoder, fast_handle.fast_decoder = fast_handle.fast_decoder, None
    exact = generation.generate(fast_handle, "Once upon a time", params, ignore_eos=True)
    fast_handle.fast_decoder = decoder
    assert exact.engine == "torch"
    assert fast.completion_ids == exact.completion_ids  # greedy text is the same here
    for mine, theirs in zip(fast.tokens, exact.tokens, strict=False):
        assert mine.logprob == pytest.approx(theirs.logprob, abs=2e-2)

    make_lora_adapter(tokenizer, data_dir / "adapters", "style")
    tuned = generation.generate(fast_handle, "Once upon a time", params, adapter="style", ignore_eos=True)
    assert tuned.engine == "torch"  # adapters run on the full-precision model
    mixed = generation.generate_batch(fast_handle, ["Once", "Once"], [params, params], adapter=[None, "style"])
    # each row runs where it can: the base row on the lean decoder's batch, the adapter row on transformers'
    assert [r.engine for r in mixed] == [generation.FAST_ENGINE, "torch"]


def test_batches_stop_strings_and_cancel_work_on_it(fast_handle):
    rows = generation.generate_batch(
        fast_handle,
        ["Hi", "A much longer prompt that needs no padding at all"],
        [SamplingParams(temperature=0.8, seed=1, max_new_tokens=6), SamplingParams(temperature=0, max_new_tokens=3)],
        ignore_eos=True,
    )
    assert [len(r.tokens) for r in rows] == [6, 3] and all(r.engine == generation.FAST_ENGINE for r in rows)
    alone = generation.generate(
        fast_handle, "Hi", SamplingParams(temperature=0.8, seed=1, max_new_tokens=6), ignore_eos=True
    )
    assert alone.completion_ids == rows[0].completion_ids  # padding in the batch changes nothing
    seen = {"tokens": False}
    for last in generation.stream(
        fast_handle, "Hi", SamplingParams(temperature=0, max_new_tokens=400), should_stop=lambda: seen["tokens"]
    ):
        seen["tokens"] = bool(last.tokens)  # stop as soon as anything was made
    assert last.finish_reason == "cancelled" and 0 < len(last.tokens) < 400


def test_other_architectures_fall_back_with_a_reason():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64))
    assert "not a Llama" in fast_decode.unsupported_reason(gpt2)
    assert fast_decode.build(gpt2) is None
    with pytest.raises(ValueError, match="cannot run this model"):
        fast_decode.FastDecoder.build(gpt2)


def test_load_handle_attaches_it_unless_turned_off(tiny_model_dir, monkeypatch):
    from pipelines.config import reset_settings

    handle = models.load_handle(str(tiny_model_dir))
    assert handle.fast_decoder is not None and handle.plan.fast_decode
    later = models.load_handle(str(tiny_model_dir), background=True)  # what the app does at start
    assert later.wait_fast_decoder(timeout=60) is not None
    monkeypatch.setenv("PLAYGROUND_FAST", "0")
    reset_settings()
    exact = models.load_handle(str(tiny_model_dir))
    assert exact.fast_decoder is None and not exact.plan.fast_decode


def test_a_model_it_cannot_run_says_so_in_the_plan(tmp_path, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    target = tmp_path / "gpt2-tiny"
    GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tokenizer))
    ).save_pretrained(target)
    tokenizer.save_pretrained(target)
    handle = models.load_handle(str(target))
    assert handle.fast_decoder is None and not handle.plan.fast_decode
    assert "no fast decoder: GPT2LMHeadModel is not a Llama" in handle.plan.reason
