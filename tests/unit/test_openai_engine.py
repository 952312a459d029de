"""The remote engine against recorded answers of vLLM and TGI, and every way a server can fail.

The recordings are the servers' documented streaming shapes (vLLM 0.x `/v1/completions` with
`stop_reason`, TGI 2.x chat chunks, its `/info` and its 422 for more than 5 alternatives), served
through httpx's MockTransport; the real-server tests are tests/system/test_openai_server.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import threading
import time

import httpx
import pytest
import torch

from pipelines.engine import chat, generation, topk_view
from pipelines.engine.messages import Message
from pipelines.engine.openai_engine import OpenAIEngine, ServerError, parse_choice
from pipelines.engine.remote_stream import RemoteEngine
from pipelines.engine.sampling import SamplingParams, process_logits
from pipelines.errors import InvalidParameter

VLLM_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "meta-llama/Llama-3.1-8B-Instruct",
            "object": "model",
            "created": 1,
            "owned_by": "vllm",
            "root": "meta-llama/Llama-3.1-8B-Instruct",
            "parent": None,
            "max_model_len": 4096,
        }
    ],
}
TGI_MODELS = {
    "object": "list",
    "data": [{"id": "tgi", "object": "model", "created": 0, "owned_by": "HuggingFaceH4/zephyr-7b-beta"}],
}
TGI_INFO = {
    "model_id": "HuggingFaceH4/zephyr-7b-beta",
    "max_input_tokens": 1024,
    "max_total_tokens": 2048,
    "router": "text-generation-router",
    "version": "2.4.0",
}


def sse(*chunks) -> bytes:
    return b"".join(f"data: {json.dumps(c) if not isinstance(c, str) else c}\n\n".encode() for c in chunks)


def vllm_chunk(text, top, finish=None, stop_reason=None):
    """One vLLM /v1/completions stream chunk: legacy logprobs, the sampled token among its alternatives."""
    tokens = [text] if text else []
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": {
                    "text_offset": [0] * len(tokens),
                    "token_logprobs": [top[text]] if text else [],
                    "tokens": tokens,
                    "top_logprobs": [top] if text else [],
                },
                "finish_reason": finish,
                "stop_reason": stop_reason,
            }
        ],
        "usage": None,
    }


def tgi_chunk(text, top, finish=None):
    """One TGI chat stream chunk."""
    logprobs = (
        {
            "content": [
                {
                    "token": text,
                    "logprob": top[text],
                    "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()],
                }
            ]
        }
        if text
        else None
    )
    return {
        "object": "chat.completion.chunk",
        "id": "",
        "created": 1,
        "model": "HuggingFaceH4/zephyr-7b-beta",
        "system_fingerprint": "2.4.0-native",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": finish}
        ],
        "usage": None,
    }


PARIS = [
    (" Paris", {" Paris": -0.1, " the": -2.6, " a": -3.1}),
    (".", {".": -0.4, ",": -1.3, " and": -2.9}),
    ("\n", {"\n": -0.2, " It": -2.0, " The": -2.5}),
]


class Recorder:
    """A MockTransport handler serving one server's recordings; it keeps every request it saw."""

    def __init__(self, kind: str = "vllm") -> None:
        self.kind = kind
        self.requests: list[tuple[str, dict, httpx.Headers]] = []
        self.urls: list[str] = []
        self.completion_stream = sse(
            *[vllm_chunk(t, top) for t, top in PARIS[:2]], vllm_chunk("", {}, "stop", "\n"), "[DONE]"
        )
        self.fail: dict[str, httpx.Response] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        self.requests.append((path, body, request.headers))
        self.urls.append(str(request.url))
        if path in self.fail:
            return self.fail.pop(path)
        if self.kind == "vllm":
            if path == "/v1/models":
                return httpx.Response(200, json=VLLM_MODELS)
            if path == "/v1/completions" or path == "/v1/chat/completions":
                if (body.get("logprobs") or 0) > 20 or (body.get("top_logprobs") or 0) > 20:
                    return httpx.Response(400, json={"object": "error", "message": "max allowed: 20", "code": 400})
                if path == "/v1/completions":
                    return httpx.Response(200, content=self.completion_stream)
                return httpx.Response(
                    200, content=sse(*[tgi_chunk(t, top) for t, top in PARIS[:2]], tgi_chunk("", {}, "stop"), "[DONE]")
                )
        if self.kind == "tgi":
            if path == "/v1/models":
                return httpx.Response(200, json=TGI_MODELS)
            if path == "/info":
                return httpx.Response(200, json=TGI_INFO)
            if path == "/v1/chat/completions":
                if (body.get("top_logprobs") or 0) > 5:
                    return httpx.Response(422, json={"error": "top_n_tokens must be <= 5", "error_type": "validation"})
                chunks = [tgi_chunk(t, top) for t, top in PARIS]
                return httpx.Response(200, content=sse(*chunks, tgi_chunk("", {}, "length"), "[DONE]"))
            if path == "/v1/completions":  # answers text only
                return httpx.Response(
                    200,
                    content=sse(
                        {"choices": [{"index": 0, "text": " Paris", "logprobs": None, "finish_reason": "length"}]},
                        "[DONE]",
                    ),
                )
        return httpx.Response(404, json={"error": f"no route {path}"})


def engine_for(recorder: Recorder, **kwargs) -> OpenAIEngine:
    engine = OpenAIEngine("http://gpu-box:8000/v1", transport=httpx.MockTransport(recorder), **kwargs)
    engine.probe()
    return engine


@pytest.fixture
def remote_handle(tiny_handle):
    def make(recorder: Recorder, **kwargs):
        return dataclasses.replace(tiny_handle, engine=RemoteEngine(engine_for(recorder, **kwargs)), scheduler=None)

    return make


def test_probe_finds_model_kind_window_and_alternatives_of_vllm_and_tgi():
    vllm = engine_for(Recorder("vllm")).server
    assert (vllm.model, vllm.kind, vllm.context_window, vllm.alternatives) == (
        "meta-llama/Llama-3.1-8B-Instruct",
        "vllm",
        4096,
        3,  # the recording carries 3 alternatives per token
    )
    tgi = engine_for(Recorder("tgi")).server
    assert (tgi.model, tgi.kind, tgi.context_window) == ("tgi", "tgi", 2048)
    assert tgi.chat_alternatives == 3 and tgi.alternatives == 0  # 20 refused (422), 5 accepted; completions: none
    assert set(tgi.unsupported()) == {"top_k", "min_p", "repetition_penalty"}
    assert vllm.unsupported() == {}


def test_generate_streams_the_servers_tokens_logprobs_and_alternatives(remote_handle):
    recorder = Recorder("vllm")
    handle = remote_handle(recorder)
    params = SamplingParams(max_new_tokens=8, temperature=0, stop=("\n",), seed=7)
    seen = [c.text for c in generation.stream(handle, "The capital of France is", params)]
    completion = generation.generate(handle, "The capital of France is", params)
    assert completion.text == " Paris." and completion.finish_reason == "stop" and completion.engine == "openai"
    assert seen[-1] == " Paris."
    assert [t.token for t in completion.tokens] == [" Paris", "."]
    assert [t.logprob for t in completion.tokens] == [-0.1, -0.4]  # exactly what the server sent
    assert [a["token"] for a in completion.tokens[0].top] == [" Paris", " the", " a"]
    path, body, _ = recorder.requests[-1]
    assert path == "/v1/completions"
    assert body["prompt"] == "The capital of France is" and body["stream"] is True
    assert body["temperature"] == 0 and body["top_k"] == 0 and body["min_p"] == 0 and body["repetition_penalty"] == 1
    assert body["stop"] == ["\n"] and body["seed"] == 7 and body["max_tokens"] == 8 and body["logprobs"] == 3
    assert completion.to_json()["engine"] == "openai"


def test_end_of_sequence_and_stop_strings_are_told_apart(remote_handle):
    recorder = Recorder("vllm")
    recorder.completion_stream = sse(vllm_chunk(" Paris", PARIS[0][1]), vllm_chunk("", {}, "stop", None), "[DONE]")
    handle = remote_handle(recorder)
    done = generation.generate(handle, "Q", SamplingParams(temperature=0, stop=("\n",)))
    assert done.finish_reason == "eos"  # vLLM's stop_reason None: end of sequence, not the stop string
    recorder.completion_stream = sse(
        vllm_chunk(" Paris", PARIS[0][1]),
        vllm_chunk(". Lyon", {". Lyon": -0.5}),
        vllm_chunk("", {}, "length"),
        "[DONE]",
    )
    cut = generation.generate(handle, "Q", SamplingParams(temperature=0, stop=(".",)))
    assert cut.text == " Paris" and cut.finish_reason == "stop"  # watched here even when the server goes on


def test_chat_goes_to_the_chat_endpoint_with_the_messages(remote_handle):
    recorder = Recorder("tgi")
    handle = remote_handle(recorder)
    completion, prompt = chat.reply(
        handle, [Message("user", "Capital of France?")], SamplingParams(temperature=0.5, seed=1)
    )
    path, body, _ = recorder.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["messages"][-1] == {"role": "user", "content": "Capital of France?"}
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert "top_k" not in body and "min_p" not in body and "repetition_penalty" not in body
    assert completion.text == " Paris.\n" and completion.finish_reason == "length"
    assert [t.token for t in completion.tokens] == [" Paris", ".", "\n"]
    assert 0 < completion.tokens[0].sampled_prob <= 1


def test_a_knob_the_server_cannot_honour_is_refused_by_name(remote_handle):
    handle = remote_handle(Recorder("tgi"))
    with pytest.raises(InvalidParameter, match="top_k") as refused:
        generation.generate(handle, "Q", SamplingParams(top_k=40))
    assert "tgi" in str(refused.value)


def test_a_llamacpp_server_gets_its_own_parameter_names():
    recorder = Recorder("vllm")
    engine = engine_for(recorder, kind="llamacpp")
    body = engine.body(SamplingParams(repetition_penalty=1.3, top_k=5, min_p=0.1), seed=1, prompt="x")
    assert body["repeat_penalty"] == 1.3 and body["top_k"] == 5 and body["min_p"] == 0.1
    assert "repetition_penalty" not in body


def test_the_api_key_is_sent_as_a_bearer_token_and_shown_nowhere(remote_handle):
    from playground.sidebar import model_card

    recorder = Recorder("vllm")
    engine = OpenAIEngine(
        "http://user:pw@gpu-box:8000/v1?x=1", api_key="sk-SECRET", transport=httpx.MockTransport(recorder)
    )
    with pytest.raises(ServerError) as refused:  # the query string makes the URL wrong: the error shows it redacted
        engine.probe()
    assert "pw" not in str(refused.value) and "sk-SECRET" not in str(refused.value)
    handle = remote_handle(recorder, api_key="sk-SECRET")
    generation.generate(handle, "Q", SamplingParams(temperature=0))
    assert all(h.get("authorization") == "Bearer sk-SECRET" for _, _, h in recorder.requests[-3:])
    shown = model_card(handle) + repr(handle.engine) + repr(handle.engine.server) + handle.engine.server.describe()
    assert "sk-SECRET" not in shown and "gpu-box:8000" in shown
    proxied = Recorder("vllm")  # credentials in the URL travel as basic auth, never in the (logged) request URL
    engine = OpenAIEngine("http://user:p%40ss@gpu-box:8000/v1", transport=httpx.MockTransport(proxied))
    assert "p%40ss" not in engine.probe().describe()
    assert all("user" not in url and "p%40ss" not in url for url in proxied.urls)
    assert proxied.requests[0][2]["authorization"] == httpx.BasicAuth("user", "p@ss")._auth_header


def test_busy_server_is_retried_before_the_first_token_within_its_retry_after(remote_handle):
    recorder = Recorder("vllm")
    handle = remote_handle(recorder)
    recorder.fail["/v1/completions"] = httpx.Response(429, headers={"Retry-After": "0.2"}, json={"error": "busy"})
    started = time.monotonic()
    assert generation.generate(handle, "Q", SamplingParams(temperature=0)).text == " Paris."
    assert 0.2 <= time.monotonic() - started < 5
    recorder.fail["/v1/completions"] = httpx.Response(503, headers={"Retry-After": "120"}, json={"error": "overloaded"})
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"gpu-box:8000.*HTTP 503.*retry after 120 s"):
        generation.generate(handle, "Q", SamplingParams(temperature=0))
    assert time.monotonic() - started < 2  # a wait beyond the budget is not waited out


def cut_stream():
    yield sse(vllm_chunk(" Paris", PARIS[0][1]))
    raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def test_a_stream_cut_midway_ends_with_one_message_and_the_text_so_far(remote_handle):
    recorder = Recorder("vllm")
    handle = remote_handle(recorder)
    recorder.fail["/v1/completions"] = httpx.Response(200, content=cut_stream())
    seen = []
    with pytest.raises(ServerError, match=r"gpu-box:8000/v1 closed the stream after 1 tokens") as failed:
        for completion in generation.stream(handle, "Q", SamplingParams(temperature=0)):
            seen.append(completion)
    assert seen[-1].text == " Paris" and seen[-1].finish_reason == "error"
    assert seen[-1].to_json()["error"] == str(failed.value)
    assert not recorder.fail and recorder.requests[-1][0] == "/v1/completions"  # no retry after a token came


def test_a_malformed_chunk_or_an_unfinished_stream_is_a_clear_error(remote_handle):
    recorder = Recorder("vllm")
    handle = remote_handle(recorder)
    recorder.fail["/v1/completions"] = httpx.Response(200, content=sse(vllm_chunk(" Paris", PARIS[0][1]), "{not json"))
    with pytest.raises(ServerError, match="malformed chunk after 1 tokens"):
        generation.generate(handle, "Q", SamplingParams(temperature=0))
    recorder.fail["/v1/completions"] = httpx.Response(200, content=sse(vllm_chunk(" Paris", PARIS[0][1])))
    with pytest.raises(ServerError, match="without finishing it"):
        generation.generate(handle, "Q", SamplingParams(temperature=0))
    recorder.fail["/v1/completions"] = httpx.Response(200, content=sse({"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(ServerError, match="CUDA out of memory"):
        generation.generate(handle, "Q", SamplingParams(temperature=0))


def test_refused_connections_and_silent_servers_fail_in_bounded_time():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ServerError, match=f"cannot reach the server at http://127.0.0.1:{port}/v1"):
        OpenAIEngine(f"http://127.0.0.1:{port}/v1").probe()
    assert time.monotonic() - started < 10
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        started = time.monotonic()
        with pytest.raises(ServerError, match="cannot reach"):
            OpenAIEngine(url, timeout=0.5).probe()
        engine = OpenAIEngine(url, timeout=0.5)
        engine.server = engine_for(Recorder("vllm")).server
        with pytest.raises(ServerError, match="did not answer in time"):
            list(engine.stream(engine.body(SamplingParams(), seed=1, prompt="x")))
        assert time.monotonic() - started < 10


def test_stop_frees_the_rows_at_once(remote_handle):
    handle = remote_handle(Recorder("vllm"))
    stop = threading.Event()
    rows = list(
        generation.stream_batch(handle, ["A", "B"], [SamplingParams(temperature=0)] * 2, should_stop=stop.is_set)
    )
    assert all(r.finish_reason == "stop" for r in rows[-1])
    stop.set()
    rows = list(generation.stream_batch(handle, ["A"], [SamplingParams(temperature=0)], should_stop=stop.is_set))
    assert rows[-1][0].finish_reason == "cancelled"


def test_base_rows_go_to_the_server_and_adapter_rows_stay_local(remote_handle, monkeypatch):
    handle = remote_handle(Recorder("vllm"))

    class LocalStandIn:  # the local engine with adapters is tested elsewhere
        name = "torch"
        capabilities = generation.LocalEngine.capabilities

        def __init__(self) -> None:
            self.adapters: list = []

        def stream(self, handle_, batch, should_stop):
            self.adapters += batch.adapters
            for row in batch.rows:
                row.text, row.finish_reason = "local", "length"
            yield batch.rows

    local = LocalStandIn()
    monkeypatch.setattr(generation, "LOCAL", local)
    rows = generation.generate_batch(handle, ["Q", "Q"], [SamplingParams(temperature=0)] * 2, adapter=[None, "aligned"])
    assert [r.engine for r in rows] == ["openai", "torch"] and rows[1].text == "local" and local.adapters == ["aligned"]
    assert rows[0].text != "local"


# --- the distribution rebuilt from the top K -----------------------------------------------------


def full_and_top(k: int = 20, vocab: int = 500, seed: int = 0):
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * 3
    logprobs = torch.log_softmax(logits, -1)
    found = torch.topk(logprobs, k)
    return logits, [(f"t{int(i)}", float(v)) for v, i in zip(found.values, found.indices, strict=False)]


def exact_final(logits, params, top):
    final = process_logits(logits, params, None).final_probs
    return {name: float(final[int(name[1:])]) for name, _ in top}


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.7, top_k=8),
        SamplingParams(temperature=1.3, top_k=20),
        SamplingParams(temperature=1.0, min_p=0.2),
        SamplingParams(temperature=1.0, top_p=0.5),
        SamplingParams(temperature=0.6, top_k=10, top_p=0.8),
        SamplingParams(temperature=0),
    ],
    ids=["top-k", "top-k=K", "min-p", "top-p T=1", "top-k then top-p", "greedy"],
)
def test_what_top_k_min_p_keep_is_exact(params):
    logits, top = full_and_top()
    view = topk_view.rebuild(top, params)
    want = exact_final(logits, params, top)
    assert view.approximate == ""
    for row in view.rows:
        if row.token != topk_view.OTHER:
            assert math.isclose(row.final_prob, want[row.token], abs_tol=1e-6), row
        else:
            assert row.final_prob == 0.0 and row.cut_by
    assert "exact" in view.summary() and "approximate" in view.summary()  # the T = 1 chart's one bar


def test_top_p_reaching_into_the_tail_and_temperature_on_the_tail_are_marked_approximate():
    logits, top = full_and_top()
    wide = topk_view.rebuild(top, SamplingParams(temperature=1.0, top_p=0.999))
    assert "nucleus reaches into the tail" in wide.approximate
    warm = topk_view.rebuild(top, SamplingParams(temperature=1.5))
    assert "temperature" in warm.approximate and warm.tail_kept
    assert "**approximate**" in warm.summary()
    raw = {r.token: r.raw_prob for r in warm.rows}
    assert math.isclose(sum(raw.values()), 1.0, abs_tol=1e-6)  # the tail is one bar: "other"
    assert math.isclose(raw[topk_view.OTHER], 1 - sum(math.exp(lp) for _, lp in top), abs_tol=1e-6)


def test_parse_choice_reads_both_logprob_shapes():
    completions = parse_choice(vllm_chunk(" Paris", PARIS[0][1])["choices"][0], chat=False)
    chat_piece = parse_choice(tgi_chunk(" Paris", PARIS[0][1])["choices"][0], chat=True)
    for piece in (completions, chat_piece):
        assert piece.text == " Paris"
        assert [(t.token, t.logprob) for t in piece.tokens] == [(" Paris", -0.1)]
        assert [t.token for t in piece.tokens[0].top] == [" Paris", " the", " a"]


def test_the_engine_settings_are_validated_and_the_key_is_not_in_their_repr(monkeypatch):
    from pipelines import config

    monkeypatch.setenv("PLAYGROUND_ENGINE", "openai")
    config.reset_settings()
    with pytest.raises(ValueError, match="PLAYGROUND_ENGINE=openai needs PLAYGROUND_OPENAI_BASE_URL"):
        config.get_settings()
    monkeypatch.setenv("PLAYGROUND_OPENAI_BASE_URL", "file:///etc/passwd")
    config.reset_settings()
    with pytest.raises(ValueError, match="PLAYGROUND_OPENAI_BASE_URL must be an http"):
        config.get_settings()
    monkeypatch.setenv("PLAYGROUND_OPENAI_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("PLAYGROUND_OPENAI_SERVER", "ollama")
    config.reset_settings()
    with pytest.raises(ValueError, match="PLAYGROUND_OPENAI_SERVER must be one of vllm, sglang, tgi, llamacpp, openai"):
        config.get_settings()
    monkeypatch.setenv("PLAYGROUND_OPENAI_SERVER", "vLLM")
    monkeypatch.setenv("PLAYGROUND_OPENAI_API_KEY", "sk-SECRET")
    config.reset_settings()
    settings = config.get_settings()
    assert settings.openai_server == "vllm" and "sk-SECRET" not in repr(settings)
    config.reset_settings()


def test_branching_from_a_remote_generation_whose_tokens_are_not_local_tokens(remote_handle, tokenizer):
    from pipelines.engine.completion import record_ids
    from pipelines.inside import token_tree

    recorder = Recorder("vllm")
    odd = "ardnamurchanesque"  # one server token, several local ones: no local id
    recorder.completion_stream = sse(
        vllm_chunk(" Paris", PARIS[0][1]),
        vllm_chunk(odd, {odd: -0.3, " x": -2.0}),
        vllm_chunk("", {}, "length"),
        "[DONE]",
    )
    handle = remote_handle(recorder)
    root = generation.generate(handle, "Q", SamplingParams(temperature=0))
    records = [t.to_json() for t in root.tokens]
    assert records[0]["id"] == tokenizer.encode(" Paris", add_special_tokens=False)[0] and records[1]["id"] == -1
    assert tokenizer.decode(record_ids(tokenizer, records)) == " Paris" + odd
    tree = token_tree.new_tree("Q", root.prompt_ids, records, root.text, finish_reason=root.finish_reason)
    forced = tokenizer.encode(" Lyon", add_special_tokens=False)
    branch = list(
        token_tree.grow(handle, tree, parent_id=0, at=2, forced_ids=forced, params=SamplingParams(temperature=0))
    )[-1]
    assert branch["text"].startswith(" Paris" + odd + " Lyon")
    assert recorder.requests[-1][1]["prompt"] == "Q Paris" + odd + " Lyon"  # the server is sent the text


@pytest.mark.slow
def test_the_cli_names_an_unreachable_server_in_one_line(tiny_model_env):
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT, free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLAYGROUND_ENGINE": "openai", "PLAYGROUND_OPENAI_BASE_URL": url}
    env["PLAYGROUND_OPENAI_API_KEY"] = "sk-SECRET"
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "generate", "--prompt", "hi", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert f"cannot reach the server at {url}" in result.stderr and "Traceback" not in result.stderr
    assert "sk-SECRET" not in result.stderr
