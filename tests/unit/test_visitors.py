"""The visitors middleware: a server-made identity per visitor, sessions bound to it, the client's address.

Issue 35 (M1): Gradio's session hash is the client's own choice and was published, and with it a
second client voted as the first and received the first one's live generation stream. These run
the middleware over a small ASGI app with Gradio's route shapes; `tests/api/test_visitor_identity_api.py`
runs the same attacks against the real app.
"""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pipelines.access import VISITOR_COOKIE, VISITOR_HEADER, VisitorKeys, alias, client_address
from playground.visitors import Sessions, Visitors

KEYS = VisitorKeys(b"k" * 32)


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "visitor": KEYS.verify(request.headers.get(VISITOR_HEADER)),
            "client": request.client.host if request.client else None,
            "body": body.decode(),
        }
    )


def _app(hops: int = 0) -> Starlette:
    routes = [
        Route("/gradio_api/queue/join", _echo, methods=["POST"]),
        Route("/gradio_api/queue/data", _echo),
        Route("/gradio_api/heartbeat/{session}", _echo),
        Route("/gradio_api/cancel", _echo, methods=["POST"]),
        Route("/config", _echo),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Visitors, keys=KEYS, hops=hops, sessions=Sessions())])


def _join(client: TestClient, session: str, **headers: str):
    return client.post("/gradio_api/queue/join", json={"data": ["hi"], "session_hash": session}, headers=headers)


def test_a_visitor_gets_a_signed_httponly_cookie_and_handlers_see_its_id():
    client = TestClient(_app())
    first = client.get("/config", headers={VISITOR_HEADER: KEYS.token("forged")})  # a client's own header is dropped
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{VISITOR_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    visitor = first.json()["visitor"]
    assert visitor and visitor != "forged" and KEYS.verify(client.cookies[VISITOR_COOKIE]) == visitor
    again = client.get("/config")
    assert again.json()["visitor"] == visitor and "set-cookie" not in again.headers  # kept, not re-minted
    forged = TestClient(_app()).get("/config", cookies={VISITOR_COOKIE: f"{visitor}.0000"})
    assert forged.json()["visitor"] != visitor  # a cookie without the server's signature is no one


def test_a_session_is_used_only_by_the_visitor_who_started_it():
    app = _app()
    victim, attacker = TestClient(app), TestClient(app)
    victim.get("/config")
    attacker.get("/config")
    started = _join(victim, "victim-session")
    assert started.status_code == 200 and json.loads(started.json()["body"])["data"] == ["hi"]  # body replayed whole
    for refused in (
        attacker.get("/gradio_api/queue/data", params={"session_hash": "victim-session"}),  # its live stream
        _join(attacker, "victim-session"),  # a vote in its name
        attacker.get("/gradio_api/heartbeat/victim-session"),  # ending it (its unload)
        attacker.post("/gradio_api/cancel", json={"session_hash": "victim-session", "event_id": "e"}),
    ):
        assert refused.status_code == 403 and "another visitor" in refused.json()["detail"]
    assert victim.get("/gradio_api/queue/data", params={"session_hash": "victim-session"}).status_code == 200
    assert _join(attacker, "attacker-session").status_code == 200  # its own sessions are its own


def test_a_browser_without_cookies_keeps_its_session_from_where_it_started():
    app = _app(hops=1)
    client = TestClient(app)
    home = {"X-Forwarded-For": "203.0.113.5"}
    client.cookies.clear()
    first = _join(client, "cookieless", **home)
    client.cookies.clear()  # third-party cookies blocked: the cookie never comes back
    again = client.get("/gradio_api/queue/data", params={"session_hash": "cookieless"}, headers=home)
    assert first.status_code == again.status_code == 200
    assert again.json()["visitor"] == first.json()["visitor"]  # one identity for the session
    client.cookies.clear()
    elsewhere = client.get(
        "/gradio_api/queue/data", params={"session_hash": "cookieless"}, headers={"X-Forwarded-For": "198.51.100.1"}
    )
    assert elsewhere.status_code == 403
    with_cookie = TestClient(app)
    with_cookie.get("/config", headers=home)
    assert (
        with_cookie.get("/gradio_api/queue/data", params={"session_hash": "cookieless"}, headers=home).status_code
        == 403
    )  # another visitor at the same address, who keeps cookies, is someone else


def test_the_client_address_comes_from_the_forwarded_header_only_behind_trusted_proxies():
    forged = {"X-Forwarded-For": "1.2.3.4"}
    assert TestClient(_app(hops=0)).get("/config", headers=forged).json()["client"] == "testclient"
    behind = TestClient(_app(hops=1), base_url="https://space.hf.space")
    answer = behind.get("/config", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9", "X-Forwarded-Proto": "https"})
    assert answer.json()["client"] == "203.0.113.9"  # what the proxy saw, not what the client wrote
    assert "SameSite=None; Secure; Partitioned" in answer.headers["set-cookie"]  # a Space is a cross-site iframe
    assert client_address("10.0.0.1", ["9.9.9.9, 5.5.5.5, 6.6.6.6"], 2) == "5.5.5.5"
    assert client_address("10.0.0.1", [], 1) == "10.0.0.1"  # a request that bypassed the proxy: its peer


def test_stored_ids_and_aliases_cannot_be_sent_back_as_the_visitor():
    visitor, token = KEYS.mint()
    stored = KEYS.stored_id(visitor)
    assert stored.startswith("anon:") and visitor not in stored and token not in stored
    assert KEYS.verify(stored) is None and KEYS.verify(stored.removeprefix("anon:")) is None
    shown = alias(stored)
    assert shown.startswith("visitor ") and stored not in shown and len(shown) == len("visitor ") + 6
    assert alias("alice") == "alice"  # signed-in names are names
    assert KEYS.address_key("203.0.113.5") == KEYS.address_key("203.0.113.5") != KEYS.address_key("203.0.113.6")


def test_the_session_table_is_bounded():
    sessions = Sessions(limit=100)
    for i in range(1_000):
        assert sessions.claim(f"s{i}", f"v{i}", True, "a") == f"v{i}"
    assert len(sessions) == 100


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"session_hash": null}'])
def test_bodies_gradio_would_refuse_are_passed_on_untouched(body):
    answer = TestClient(_app()).post(
        "/gradio_api/queue/join", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200 and answer.json()["body"] == body.decode()
