"""The playground as an MCP server (PLAYGROUND_MCP=1), driven by a real client of the `mcp` package.

Only the read-only tools are listed and callable; the app's write endpoints are refused by name;
results equal what the pipelines give the UI and the CLI; refusals are the same as theirs; with
PLAYGROUND_AUTH the MCP routes need the app's accounts (HTTP Basic, throttled like the login page).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from pipelines import access, config
from pipelines.agents import tools
from tests.helpers import as_public_space, launched_app

pytestmark = pytest.mark.api

TOOLS = {fn.__name__ for fn in tools.READ_ONLY}
WRITE_ENDPOINTS = ("start_alignment", "vote", "rag_delete", "rag_ingest", "start_reward_training", "import_preferences")


def _mcp(url: str) -> str:
    return url.rstrip("/") + "/gradio_api/mcp/"


def _session(url: str, work: Callable[[ClientSession], Awaitable[Any]], auth: httpx.Auth | None = None) -> Any:
    async def main() -> Any:
        async with streamablehttp_client(_mcp(url), auth=auth) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(main())


def _call(url: str, name: str, arguments: dict, auth: httpx.Auth | None = None) -> tuple[bool, str]:
    async def work(session: ClientSession) -> tuple[bool, str]:
        result = await session.call_tool(name, arguments)
        return bool(result.isError), result.content[0].text

    return _session(url, work, auth)


@pytest.fixture
def mcp_on(monkeypatch):
    monkeypatch.setenv("PLAYGROUND_MCP", "1")
    config.reset_settings()
    yield
    config.reset_settings()


@pytest.fixture(scope="module")
def mcp_url(tiny_handle):
    """One app for the tests that only read (launching costs ~1.5 s)."""
    from pipelines.engine import models

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLAYGROUND_MCP", "1")
        config.reset_settings()
        models.set_handle(tiny_handle)
        try:
            with launched_app(tiny_handle) as url:
                yield url
        finally:
            models.set_handle(None)
            config.reset_settings()


@pytest.fixture
def use_mcp_app(mcp_url, use_tiny):
    return mcp_url


def test_only_the_read_only_tools_are_listed_each_typed_and_described(mcp_url):
    async def work(session: ClientSession) -> list:
        return (await session.list_tools()).tools

    listed = {tool.name: tool for tool in _session(mcp_url, work)}
    assert set(listed) == TOOLS
    generate = listed["generate"]
    assert generate.inputSchema["required"] == ["prompt"]
    assert generate.inputSchema["properties"]["temperature"]["type"] == "number"
    assert generate.inputSchema["properties"]["seed"]["type"] == "integer"
    assert "0 = greedy" in generate.inputSchema["properties"]["temperature"]["description"]
    assert listed["chat"].inputSchema["properties"]["messages"]["type"] == "array"
    for tool in listed.values():
        assert "Returns: JSON" in tool.description, tool.name
        assert all(p.get("description") for p in tool.inputSchema["properties"].values()), tool.name
    schema = httpx.get(_mcp(mcp_url) + "schema", timeout=10).json()  # what Hugging Face reads for a Space
    assert {entry["name"] for entry in schema} == TOOLS


def test_write_endpoints_are_neither_listed_nor_callable(mcp_url, tiny_handle, monkeypatch):
    """Called by the names gradio's own server would give them (their functions' names)."""
    import app as app_module
    from playground import mcp

    monkeypatch.setenv("PLAYGROUND_MCP", "1")
    config.reset_settings()
    unfiltered = mcp.ReadOnlyServer.__bases__[0](app_module.build_app(tiny_handle.name))
    writes = {
        tool: endpoint
        for tool, endpoint in unfiltered.tool_to_endpoint.items()
        if endpoint.lstrip("/") in WRITE_ENDPOINTS
    }
    assert len(writes) == len(WRITE_ENDPOINTS), writes
    for tool in writes:
        failed, text = _call(mcp_url, tool, {})
        assert failed and "Unknown tool" in text, (tool, text)


def test_two_tools_answer_as_the_pipelines_do(use_mcp_app: str, use_tiny):
    from pipelines import inside
    from pipelines.engine import generation
    from pipelines.engine.sampling import SamplingParams

    failed, text = _call(
        use_mcp_app, "generate", {"prompt": "The cat", "max_new_tokens": 6, "temperature": 0.8, "seed": 11}
    )
    assert not failed, text
    document = json.loads(text)
    expected = generation.generate(use_tiny, "The cat", SamplingParams(max_new_tokens=6, temperature=0.8, seed=11))
    assert document["text"] == expected.text and document["seed"] == 11
    assert [t["id"] for t in document["tokens"]] == [t.id for t in expected.tokens]

    failed, text = _call(use_mcp_app, "tokenize", {"text": "hello world"})
    assert not failed and json.loads(text) == inside.tokens(use_tiny.tokenizer, "hello world")


def test_the_other_tools_answer(use_mcp_app: str, use_tiny, tmp_path):
    from pipelines.rag import store

    store.create("mcp-notes", chunk_size=64, overlap=8)
    notes = tmp_path / "harbour.md"
    notes.write_text("# Harbour\n\nThe Corran lighthouse was repainted red in 1987 by volunteers.\n", encoding="utf-8")
    store.ingest("mcp-notes", [(str(notes), "harbour.md")])
    calls = {
        "chat": {"messages": [{"role": "user", "content": "Say hi"}], "max_new_tokens": 4, "temperature": 0},
        "next_token_distribution": {"prompt": "The cat", "top_n": 3, "top_k": 2},
        "score_continuation": {"prompt": "The cat", "continuation": " sat"},
        "perplexity": {"text": "The cat sat on the mat."},
        "rag_ask": {
            "collection": "mcp-notes",
            "question": "When was the lighthouse repainted?",
            "k": 1,
            "max_new_tokens": 4,
        },
        "reasoning_compare": {"question": "What is 2 plus 3?", "strategies": "direct,pal", "max_new_tokens": 8},
    }
    answers = {name: _call(use_mcp_app, name, arguments) for name, arguments in calls.items()}
    assert not any(failed for failed, _ in answers.values()), answers
    found = {name: json.loads(text) for name, (_, text) in answers.items()}
    assert found["chat"]["role"] == "assistant" and found["chat"]["completion_tokens"] <= 4
    assert (
        len(found["next_token_distribution"]["candidates"]) >= 2
        and found["next_token_distribution"]["kept_tokens"] == 2
    )
    assert found["score_continuation"]["logprob"] < 0 and found["perplexity"]["perplexity"] > 1
    assert found["rag_ask"]["chunks"][0]["source"] == "harbour.md" and isinstance(found["rag_ask"]["answer"], str)
    assert [r["strategy"] for r in found["reasoning_compare"]["results"]] == ["direct", "pal"]


@pytest.mark.parametrize(
    ("name", "arguments", "reason"),
    [
        ("generate", {"prompt": ""}, r"prompt: is empty"),
        ("generate", {"prompt": "x", "temperature": -1}, r"temperature"),
        ("generate", {"prompt": "x", "adapter": "nobody"}, r"nobody"),
        ("chat", {"messages": [{"role": "wizard", "content": "x"}]}, r"role 'wizard'"),
        ("next_token_distribution", {"prompt": "x", "top_n": 1000}, r"top_n"),
        ("rag_ask", {"collection": "missing", "question": "why?"}, r"missing"),
        ("reasoning_compare", {"question": "2+2?", "strategies": "magic"}, r"magic"),
        ("perplexity", {"text": "word " * 100_000}, r"limit|tokens"),
    ],
)
def test_bad_input_is_refused_with_the_reason(use_mcp_app, name, arguments, reason):
    import re

    failed, text = _call(use_mcp_app, name, arguments)
    assert failed and re.search(reason, text), text


def test_an_oversized_message_is_refused_before_it_is_read(mcp_url):
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"x": "' + b"a" * (5 * 2**20) + b'"}}'
    response = httpx.post(_mcp(mcp_url), content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413 and "at most 4 MB" in response.text


@pytest.fixture
def signed_in_mcp(mcp_on, use_tiny, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_AUTH", "alice:alice-pw")
    access.reset_policy()
    with launched_app(use_tiny) as url:
        yield url
    access.reset_policy()


def test_with_sign_in_the_mcp_routes_need_an_account(signed_in_mcp):
    url = _mcp(signed_in_mcp)
    for path in ("", "schema", "sse"):
        response = httpx.get(url + path, timeout=10)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(url + "schema", auth=("alice", "nope"), timeout=10).status_code == 401
    listed = _session(signed_in_mcp, lambda s: s.list_tools(), auth=httpx.BasicAuth("alice", "alice-pw"))
    assert {tool.name for tool in listed.tools} == TOOLS
    failed, text = _call(signed_in_mcp, "tokenize", {"text": "hi"}, auth=httpx.BasicAuth("alice", "alice-pw"))
    assert not failed and json.loads(text)["count"] >= 1
    # a signed-in browser's cookie is enough
    browser = httpx.Client(base_url=signed_in_mcp, timeout=10)
    assert browser.post("login", data={"username": "alice", "password": "alice-pw"}).status_code == 200
    assert browser.get("gradio_api/mcp/schema").status_code == 200


def test_guessing_passwords_over_mcp_is_throttled(signed_in_mcp):
    url = _mcp(signed_in_mcp) + "schema"
    codes = [httpx.get(url, auth=("alice", f"guess{i}"), timeout=10).status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429
    locked = httpx.get(url, auth=("alice", "alice-pw"), timeout=10)  # even the right password waits, from here
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
    header = "Basic " + base64.b64encode(b"\xff\xfe").decode()
    assert httpx.get(url, headers={"authorization": header}, timeout=10).status_code == 401


def test_on_a_public_space_anonymous_agents_may_read(mcp_on, use_tiny, monkeypatch):
    as_public_space(monkeypatch)
    with launched_app(use_tiny) as url:
        failed, text = _call(url, "tokenize", {"text": "hi"})
    assert not failed and json.loads(text)["count"] >= 1


def test_off_by_default_even_with_gradios_own_switch(use_tiny, monkeypatch):
    monkeypatch.setenv("GRADIO_MCP_SERVER", "true")  # gradio alone would serve every endpoint as a tool
    config.reset_settings()
    with launched_app(use_tiny) as url:
        assert httpx.get(_mcp(url) + "schema", timeout=10).status_code == 404
        api = httpx.get(url.rstrip("/") + "/gradio_api/info", timeout=10).json()
    assert not [name for name in api["named_endpoints"] if name.startswith("/mcp_")]
