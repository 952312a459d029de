"""The launched app under continuous batching: a client that goes away mid-stream frees its slot."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from pipelines.engine import scheduler

pytestmark = pytest.mark.api


@pytest.fixture
def one_slot(use_tiny, monkeypatch):
    """One decoding slot, a slowed tiny model (a long stream outlives the test's reading of it),
    and every request the scheduler receives, to look at afterwards."""
    original = use_tiny.forward
    monkeypatch.setattr(use_tiny, "forward", lambda *a, **k: time.sleep(0.01) or original(*a, **k), raising=False)
    use_tiny.scheduler = scheduler.Scheduler(use_tiny, max_rows=1, max_queue=4)
    seen: list[scheduler.Request] = []
    submit = use_tiny.scheduler.submit
    monkeypatch.setattr(use_tiny.scheduler, "submit", lambda *a: seen.append(submit(*a)) or seen[-1])
    yield seen
    use_tiny.scheduler = None


def _join(url: str, session: str, tokens: int) -> None:
    config = httpx.get(url + "config").json()
    dependency = next(d for d in config["dependencies"] if d.get("api_name") == "generate")
    kinds = {c["id"]: c.get("type") for c in config["components"]}
    values = iter(["Hello", None, tokens, 0.0, 0, 1.0, 0.0, 1.0, 0, ""])  # the /generate parameters, in order
    data = [None if kinds.get(i) == "state" else next(values) for i in dependency["inputs"]]
    httpx.post(
        url + "gradio_api/queue/join",
        json={"data": data, "fn_index": dependency["id"], "session_hash": session},
    ).raise_for_status()


def test_a_client_that_disconnects_frees_its_slot(app_url, one_slot, use_tiny):
    session = uuid.uuid4().hex[:12]
    _join(app_url, session, 400)
    with httpx.stream("GET", app_url + "gradio_api/queue/data", params={"session_hash": session}, timeout=60) as sse:
        for line in sse.iter_lines():
            if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                break  # tokens are streaming: now the client goes away
    deadline = time.monotonic() + 30
    while use_tiny.scheduler.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert use_tiny.scheduler.running == 0
    row = one_slot[0].states[0].row
    assert row.finish_reason == "cancelled" and len(row.tokens) < 400  # freed, not run to its end
    # and the next visitor gets the slot
    from gradio_client import Client

    text, stats = Client(app_url, verbose=False).predict(prompt="Hi", max_new_tokens=3, api_name="/generate")
    assert "finished" in stats
