"""The optional llama.cpp engine: how requests are routed to it, and (when installed) llama.cpp itself.

Routing is tested everywhere with a stand-in engine that computes logits with the tiny torch
model, so the stream must come out token for token as on torch. The tests of llama.cpp itself
need `make llamacpp`; without it they skip and say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines import config
from pipelines.engine import generation, llamacpp_engine, models
from pipelines.engine.engines import Engine, LogitsEngine
from pipelines.engine.sampling import SamplingParams
from pipelines.store import jobs

needs_llamacpp = pytest.mark.skipif(
    not llamacpp_engine.available(), reason=f"llama-cpp-python is not installed: {llamacpp_engine.INSTALL_HINT}"
)


class TorchLogits(LogitsEngine):
    """Next-token logits from a torch model without a KV cache: the engine interface, computed independently."""

    name = "llama.cpp"

    def __init__(self, model) -> None:
        self.model = model
        self.calls: list[int] = []

    def next_logits(self, ids):
        self.calls.append(len(ids))
        with torch.inference_mode():
            return self.model(torch.tensor([list(ids)])).logits[0, -1].float()


@pytest.fixture
def engine_handle(tokenizer):
    from tests.helpers import build_tiny_model

    handle = models.wrap(build_tiny_model(tokenizer), tokenizer, name="tiny-llama", source="in-process")
    torch_only = models.wrap(build_tiny_model(tokenizer), tokenizer, name="tiny-llama", source="in-process")
    handle.engine = TorchLogits(handle.model)
    return handle, torch_only


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0, max_new_tokens=10),
        SamplingParams(temperature=1.0, top_k=40, top_p=0.9, repetition_penalty=1.2, seed=7, max_new_tokens=10),
    ],
)
def test_engine_rows_match_torch_rows(engine_handle, params):
    handle, torch_only = engine_handle
    prompts = ["The quick brown fox", "Once upon a time"]
    rows = generation.generate_batch(handle, prompts, [params, params.with_seed(8)], ignore_eos=True)
    expected = generation.generate_batch(torch_only, prompts, [params, params.with_seed(8)], ignore_eos=True)
    assert [r.completion_ids for r in rows] == [r.completion_ids for r in expected]
    assert [r.text for r in rows] == [r.text for r in expected]
    assert all(r.engine == "llama.cpp" for r in rows) and all(r.engine == "torch" for r in expected)
    assert rows[0].to_json()["engine"] == "llama.cpp"
    # logprobs and alternatives come from the same sampling code
    assert rows[0].tokens[0].logprob == pytest.approx(expected[0].tokens[0].logprob, abs=1e-4)
    assert [t["token"] for t in rows[0].tokens[0].top] == [t["token"] for t in expected[0].tokens[0].top]


def test_rows_stream_one_after_another_and_stop_strings_hold(engine_handle):
    handle, _ = engine_handle
    params = SamplingParams(temperature=0, max_new_tokens=6)
    snapshots = [
        [len(r.tokens) for r in rows]
        for rows in generation.stream_batch(handle, ["a b c", "d e f"], [params, params], ignore_eos=True)
    ]
    assert snapshots[0] == [1, 0] and snapshots[-1] == [6, 6]
    assert [6, 1] in snapshots  # the second row starts once the first is finished


def test_adapters_and_cancel_are_routed(engine_handle):
    handle, _ = engine_handle
    engine = handle.engine
    assert isinstance(engine, Engine) and isinstance(generation.LOCAL, Engine)
    assert generation.engine_for(handle, None) is engine  # rows without an adapter go to llama.cpp
    assert generation.engine_for(handle, "some-adapter") is generation.LOCAL  # it runs no adapters
    calls = iter(range(100))
    rows = generation.generate_batch(
        handle,
        ["x y", "z"],
        [SamplingParams(temperature=0, max_new_tokens=50)] * 2,
        ignore_eos=True,
        should_stop=lambda: next(calls) >= 3,
    )
    assert [r.finish_reason for r in rows] == ["cancelled", "cancelled"]
    assert len(rows[0].tokens) == 3 and rows[1].tokens == []


def test_engine_setting_is_validated(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_ENGINE", "vllm")
    config.reset_settings()
    with pytest.raises(ValueError, match="PLAYGROUND_ENGINE must be torch, llamacpp or openai"):
        config.get_settings()
    monkeypatch.setenv("PLAYGROUND_ENGINE", "llama.cpp")
    config.reset_settings()
    assert config.get_settings().engine == "llamacpp"


def test_missing_package_or_gguf_is_a_clear_error(monkeypatch, tiny_model_env):
    monkeypatch.setenv("PLAYGROUND_ENGINE", "llamacpp")
    config.reset_settings()
    with pytest.raises(models.ModelUnavailable, match="needs a GGUF file"):
        models.load_handle()
    monkeypatch.setattr(llamacpp_engine, "available", lambda: False)
    with pytest.raises(llamacpp_engine.EngineUnavailable, match="make llamacpp"):
        llamacpp_engine.LlamaCppEngine(Path("model.gguf"), n_ctx=512, threads=1)


def test_jobs_always_decode_on_torch():
    source = Path(jobs.__file__).read_text()
    assert '"PLAYGROUND_ENGINE": "torch"' in source


# --- llama.cpp itself ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama(bundled_dir):
    gguf = models.bundled_gguf_path()
    engine = llamacpp_engine.LlamaCppEngine(gguf, n_ctx=1024, threads=2)
    yield engine
    engine.close()


@needs_llamacpp
def test_llamacpp_logits_follow_the_torch_model(llama, real_handle):
    ids = real_handle.tokenizer("The capital of France is")["input_ids"]
    ours = llama.next_logits(ids)
    with torch.inference_mode():
        reference = real_handle.model(torch.tensor([ids])).logits[0, -1].float()
    assert ours.shape == reference.shape
    assert torch.nn.functional.cosine_similarity(ours, reference, dim=0) > 0.95
    assert int(ours.argmax()) == int(reference.argmax())


@needs_llamacpp
def test_llamacpp_prefix_reuse_and_interleaving_give_fresh_results(llama, real_handle):
    tok = real_handle.tokenizer
    a = tok("One two three four five")["input_ids"]
    b = tok("Seven eight nine")["input_ids"]
    llama.llm.reset()
    fresh_a = llama.next_logits(a)
    llama.llm.reset()
    fresh_b = llama.next_logits(b)
    llama.llm.reset()
    # interleave two sequences and grow one token at a time: the cache must never leak between them
    for _ in range(2):
        assert torch.allclose(llama.next_logits(a), fresh_a, atol=1e-3)
        assert torch.allclose(llama.next_logits(b), fresh_b, atol=1e-3)
    grown = llama.next_logits(a + [int(fresh_a.argmax())])
    llama.llm.reset()
    assert torch.allclose(grown, llama.next_logits(a + [int(fresh_a.argmax())]), atol=1e-3)


@needs_llamacpp
def test_app_generation_runs_on_llamacpp(llama, real_handle):
    real_handle.engine = llama
    try:
        params = SamplingParams(temperature=0, max_new_tokens=12)
        completion = generation.generate(real_handle, "The capital of France is", params)
    finally:
        real_handle.engine = None
    assert completion.engine == "llama.cpp"
    assert "Paris" in completion.text
    assert all(t.top for t in completion.tokens)


@needs_llamacpp
def test_the_compression_lab_times_the_bundled_gguf_in_llama_cpp(real_handle):
    from pipelines.inside import compression

    rows = compression.compress(real_handle, compression.CompressSpec(variants=["q4_1", "q4_0"], new_tokens=8))
    q4_1, q4_0 = rows["variants"][1:]
    assert q4_1["tokens_per_second"] > 0 and q4_1["timed_by"].startswith("llama.cpp")
    assert q4_0["tokens_per_second"] is None and "another type" in q4_0["timed_by"]
