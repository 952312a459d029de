"""The remote engine against a real OpenAI-compatible server: llama-cpp-python's, on the bundled GGUF.

The server runs from its own virtual environment (`make llamacpp-server` builds it: it compiles
llama.cpp, ~5 minutes), started on loopback by these tests. Without it they skip and say how to
enable them; `make test-openai` builds it and runs them, and `.ci/run` does so when time allows.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pipelines import config
from pipelines.engine import chat, generation, models
from pipelines.engine.messages import Message
from pipelines.engine.model_source import bundled_gguf_path
from pipelines.engine.openai_engine import ServerError
from pipelines.engine.sampling import SamplingParams
from pipelines.labels import comparisons
from pipelines.rag.answer import stream_answers
from pipelines.rag.retrieval import Hit
from pipelines.rag.store import ChunkRecord
from tests.helpers import ROOT, free_port

pytestmark = [pytest.mark.openai_server, pytest.mark.system]
SERVER_PYTHON = Path(
    os.environ.get("PLAYGROUND_TEST_LLAMACPP_SERVER", ROOT / ".cache" / "llamacpp-server" / "bin" / "python")
)
ENABLE = "run `make llamacpp-server` (a venv with llama-cpp-python[server]; compiles llama.cpp) or `make test-openai`"


def _server_available() -> bool:
    if not SERVER_PYTHON.exists():
        return False
    return subprocess.run([str(SERVER_PYTHON), "-c", "import llama_cpp.server"], capture_output=True).returncode == 0


@contextmanager
def llama_server():
    """`python -m llama_cpp.server` on the bundled GGUF, on a free loopback port; yields (url, process)."""
    if not _server_available():
        pytest.skip(f"the OpenAI-server tests need llama-cpp-python's server: {ENABLE}")
    port = free_port()
    log = tempfile.TemporaryFile()  # a file, not a pipe: llama.cpp's load log would fill a pipe and stall it
    process = subprocess.Popen(
        [
            str(SERVER_PYTHON),
            "-m",
            "llama_cpp.server",
            "--model",
            str(bundled_gguf_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            "--interrupt_requests",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the server did not answer within 90 s")
        yield url, process
    finally:
        process.kill()
        process.wait()
        log.close()


@pytest.fixture(scope="module")
def server():
    with llama_server() as (url, _):
        yield url


@pytest.fixture
def remote(server, bundled_dir, monkeypatch):
    """The bundled model loaded locally, with the server as its engine (as PLAYGROUND_ENGINE=openai does)."""
    monkeypatch.setenv("PLAYGROUND_ENGINE", "openai")
    monkeypatch.setenv("PLAYGROUND_OPENAI_BASE_URL", server)
    config.reset_settings()
    monkeypatch.setenv("PLAYGROUND_FAST", "0")  # the local decoder is not what these tests are about
    handle = models.load_handle(str(bundled_dir))
    yield handle
    handle.engine.close()


def direct(url: str, path: str, body: dict) -> dict:
    """The server's own answer to the same request, not streamed: what the engine must report."""
    response = httpx.post(f"{url}/{path}", json={**body, "stream": False}, timeout=120)
    response.raise_for_status()
    return response.json()


def test_probe_names_the_server(remote, server):
    found = remote.remote_server
    assert found.kind == "llamacpp" and found.model.endswith(".gguf") and found.base_url == server
    assert found.alternatives == 20 and found.chat_alternatives == 20
    assert remote.engine_name == "openai"


def test_generate_streams_the_servers_log_probabilities_and_alternatives(remote, server):
    params = SamplingParams(max_new_tokens=12, temperature=0, seed=1)
    streamed = [c.text for c in generation.stream(remote, "Once upon a time", params)]
    completion = generation.generate(remote, "Once upon a time", params)
    assert len(set(streamed)) > 2 and streamed[-1] == completion.text  # it grew as it streamed
    assert completion.engine == "openai" and completion.finish_reason == "length" and len(completion.tokens) == 12
    answer = direct(
        server,
        "completions",
        {
            "prompt": "Once upon a time",
            "max_tokens": 12,
            "temperature": 0,
            "logprobs": 20,
            "top_k": 0,
            "min_p": 0,
            "repeat_penalty": 1.0,
            "seed": 1,
        },
    )
    choice = answer["choices"][0]
    assert completion.text == choice["text"]
    assert [t.token for t in completion.tokens] == choice["logprobs"]["tokens"]
    for token, logprob, top in zip(
        completion.tokens, choice["logprobs"]["token_logprobs"], choice["logprobs"]["top_logprobs"], strict=False
    ):
        assert math.isclose(token.logprob, logprob, abs_tol=1e-4)
        assert len(token.top) == 20
        assert {a["token"] for a in token.top} == set(top)
    assert all(t.id >= 0 for t in completion.tokens)  # the same tokenizer here: ids map back


def test_the_cli_generates_through_the_server(server, bundled_dir, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PLAYGROUND_ENGINE": "openai",
        "PLAYGROUND_OPENAI_BASE_URL": server,
        "PLAYGROUND_MODEL": str(bundled_dir),
        "PLAYGROUND_DATA_DIR": str(tmp_path),
    }
    command = [
        "-m",
        "pipelines",
        "generate",
        "--prompt",
        "Once upon a time",
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
    ]
    result = subprocess.run([sys.executable, *command, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    answer = direct(
        server,
        "completions",
        {
            "prompt": "Once upon a time",
            "max_tokens": 8,
            "temperature": 0,
            "top_k": 0,
            "min_p": 0,
            "repeat_penalty": 1.0,
        },
    )
    assert doc["engine"] == "openai" and doc["text"] == answer["choices"][0]["text"]
    assert doc["completion_tokens"] == 8 and all(len(t["top"]) == 20 for t in doc["tokens"])


def test_a_stop_string_is_honoured(remote):
    greedy = generation.generate(remote, "Once upon a time", SamplingParams(max_new_tokens=16, temperature=0))
    stop = greedy.tokens[4].token
    assert stop.strip()
    cut = generation.generate(
        remote, "Once upon a time", SamplingParams(max_new_tokens=16, temperature=0, stop=(stop,))
    )
    assert cut.finish_reason == "stop" and cut.text == greedy.text[: greedy.text.index(stop)]


def test_chat_answers_through_the_servers_template(remote, server):
    messages = [Message("user", "What is the capital of France?")]
    completion, prompt = chat.reply(remote, messages, SamplingParams(max_new_tokens=24, temperature=0))
    answer = direct(
        server,
        "chat/completions",
        {
            "messages": [m.to_json() for m in prompt.messages],
            "max_tokens": 24,
            "temperature": 0,
            "top_k": 0,
            "min_p": 0,
            "repeat_penalty": 1.0,
            "seed": completion.seed,
        },
    )
    assert completion.text and completion.text == answer["choices"][0]["message"]["content"]
    assert completion.engine == "openai" and all(t.top for t in completion.tokens)


def test_a_comparison_and_a_rag_answer(remote):
    sources = [comparisons.Source(params=SamplingParams(max_new_tokens=16, temperature=t, seed=3)) for t in (0.0, 0.9)]
    item = comparisons.generate_item(remote, [Message("user", "Name a fruit.")], sources)
    assert len(item.responses) == 2 and all(r.text for r in item.responses)
    passage = ChunkRecord(
        1, "doc", "lighthouse.txt", None, 0, 60, "The Ardnamurchan lighthouse was built in 1849 by Alan Stevenson."
    )
    rows = list(
        stream_answers(
            remote,
            "When was the Ardnamurchan lighthouse built?",
            [Hit(passage, 1.0, 1)],
            SamplingParams(max_new_tokens=24, temperature=0),
        )
    )
    grounded, baseline, _ = rows[-1]
    assert grounded.engine == "openai" and grounded.text and baseline is not None and baseline.text
    assert grounded.finish_reason in {"eos", "length"}


def test_the_distribution_view_comes_from_the_servers_top_k(remote):
    ids = generation.encode(remote, "Once upon a time")
    view = generation.inspect_next_token(remote, ids, SamplingParams(temperature=0.7, top_k=5))
    assert view.approximate == "" and sum(1 for r in view.rows if r.final_prob > 0) == 5
    assert math.isclose(sum(r.final_prob for r in view.rows), 1.0, abs_tol=1e-6)
    assert view.rows[0].token == ","


def test_a_server_killed_mid_stream_gives_a_clear_error_within_10_s(bundled_dir, monkeypatch):
    with llama_server() as (url, process):
        monkeypatch.setenv("PLAYGROUND_ENGINE", "openai")
        monkeypatch.setenv("PLAYGROUND_OPENAI_BASE_URL", url)
        monkeypatch.setenv("PLAYGROUND_FAST", "0")
        config.reset_settings()
        handle = models.load_handle(str(bundled_dir))
        params = SamplingParams(max_new_tokens=1500, temperature=0.9, seed=5)
        seen = []
        killed = None
        with pytest.raises(ServerError, match=f"server at {url}") as failed:
            for completion in generation.stream(handle, "Once upon a time, in a lighthouse by the sea,", params):
                seen.append(completion.text)
                if len(completion.tokens) >= 5 and process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    killed = time.monotonic()
        assert time.monotonic() - killed < 10
        assert seen[-1] and completion.finish_reason == "error" and completion.error == str(failed.value)
        print(f"after the kill: {failed.value}", file=sys.stderr)
