"""Who is on the other end of each request, decided by the server: an ASGI middleware.

Gradio names a browser tab by a `session_hash` that the client itself chooses, and everything
keyed by it -- the event stream of its generations, its heartbeat (whose end unloads the session),
cancelling its events -- answered whoever sent the value. Issue 35 reused a published one to vote
as another visitor and to receive their live stream. Here:

- every visitor gets a random id in a signed, HttpOnly cookie (`pipelines.access.VisitorKeys`);
- the first request that names a session binds it to that visitor; a later request naming it
  with another visitor's cookie, or none, is refused (403) before Gradio sees it. A browser that
  keeps no cookies at all (third-party cookies blocked in an iframe) still works: its session is
  bound to the address it came from;
- handlers learn the visitor from `x-playground-visitor`, which this middleware writes (signed)
  after dropping any copy the client sent;
- the client's address is the connecting peer, or, behind `PLAYGROUND_PROXY_HOPS` trusted proxies,
  what the outermost one saw (`access.client_address`); it replaces the ASGI scope's, so Gradio's
  `request.client` and the sign-in throttle see the same one.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from pipelines.access import VISITOR_COOKIE, VISITOR_HEADER, VisitorKeys, client_address, visitor_keys
from pipelines.config import get_settings

COOKIE_SECONDS = 365 * 24 * 3600
MAX_SESSIONS = 100_000
MAX_BODY_BYTES = 64 * 2**20  # a queued event's JSON (its inputs; files travel through /upload)
API = r"/gradio_api"
IN_BODY = re.compile(API + r"/(queue/join|cancel|run/[^/]+|api/[^/]+|call/[^/]+|call/v2/[^/]+)/?$")
IN_PATH = re.compile(API + r"/(heartbeat/(?P<beat>[^/]+)|stream/(?P<media>[^/]+)/[^/]+/[^/]+/[^/]+)/?$")
IN_QUERY = re.compile(API + r"/queue/data/?$")

client_of_request: ContextVar[str | None] = ContextVar("client_address", default=None)


class _TooLarge(Exception):
    pass


@dataclass
class Owner:
    visitor: str
    address: str | None
    confirmed: bool  # the client sent the visitor's cookie back at least once


class Sessions:
    """Which visitor each Gradio session belongs to (the first to name it), least recently used dropped first."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self._owners: OrderedDict[str, Owner] = OrderedDict()

    def claim(self, session: str, visitor: str, from_cookie: bool, address: str | None) -> str | None:
        """The visitor this session belongs to, or None when this request may not use it."""
        owner = self._owners.get(session)
        if owner is None:
            self._owners[session] = Owner(visitor, address, from_cookie)
            while len(self._owners) > self.limit:
                self._owners.popitem(last=False)
            return visitor
        self._owners.move_to_end(session)
        if from_cookie and visitor == owner.visitor:
            owner.confirmed = True
            return visitor
        if not from_cookie and not owner.confirmed and owner.address == address:
            return owner.visitor  # a browser that keeps no cookies, from where it started
        return None

    def __len__(self) -> int:
        return len(self._owners)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key == name]


def _cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    for raw in _header(headers, b"cookie"):
        try:
            jar.load(raw)
        except Exception:  # noqa: BLE001 - a malformed Cookie header is no cookie
            continue
    morsel = jar.get(VISITOR_COOKIE)
    return morsel.value if morsel else None


def _set_cookie(token: str, secure: bool) -> bytes:
    # inside a Space the app is a cross-site iframe: only SameSite=None; Secure (partitioned) cookies reach it
    same_site = "SameSite=None; Secure; Partitioned" if secure else "SameSite=Lax"
    return f"{VISITOR_COOKIE}={token}; Path=/; Max-Age={COOKIE_SECONDS}; HttpOnly; {same_site}".encode()


async def refuse(
    send: Callable[[dict], Awaitable[None]], status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer the request here, before the app sees it: a JSON `detail`, as FastAPI's own refusals."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any, limit: int) -> bytes | None:
    """A request's whole body, or None past `limit` bytes (read no further: a declared length may lie)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        more = message.get("more_body", False)
    return b"".join(chunks)


def replaying(body: bytes, receive: Any) -> Callable[[], Awaitable[dict]]:
    """A `receive` that yields the body already read, then whatever the connection sends next."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class Visitors:
    """ASGI middleware: the visitor cookie, the client address and sessions bound to their visitor."""

    def __init__(
        self, app: Any, keys: VisitorKeys | None = None, hops: int | None = None, sessions: Sessions | None = None
    ) -> None:
        self.app = app
        self.keys = keys or visitor_keys()
        self.hops = get_settings().proxy_hops if hops is None else hops
        self.sessions = sessions or Sessions()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k != VISITOR_HEADER.encode()]
        peer, port = (scope.get("client") or (None, 0))[:2]
        address = client_address(peer, _header(headers, b"x-forwarded-for"), self.hops)
        scope = {**scope, "client": (address, port) if address else scope.get("client")}
        visitor = self.keys.verify(_cookie(headers))
        from_cookie, minted = visitor is not None, None
        if visitor is None:
            visitor, minted = self.keys.mint()

        path = scope.get("path", "")
        try:
            session, receive = await self._session_named(scope, path, receive)
        except _TooLarge:
            await refuse(send, 413, f"The request is larger than {MAX_BODY_BYTES // 2**20} MB.")
            return
        if session is not None:
            owner = self.sessions.claim(session, visitor, from_cookie, address)
            if owner is None:
                await refuse(send, 403, "This session belongs to another visitor: reload the page for your own.")
                return
            visitor = owner
        headers.append((VISITOR_HEADER.encode(), self.keys.token(visitor).encode()))
        scope["headers"] = headers
        forwarded_proto = (_header(headers, b"x-forwarded-proto") or [""])[-1].split(",")[-1].strip()
        secure = scope.get("scheme") == "https" or (self.hops > 0 and forwarded_proto == "https")

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start" and minted and not from_cookie:
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", _set_cookie(minted, secure))],
                }
            await send(message)

        token = client_of_request.set(address)
        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            client_of_request.reset(token)

    async def _session_named(self, scope: dict, path: str, receive: Any) -> tuple[str | None, Any]:
        """The session hash this request names (in its path, query or JSON body), and a `receive`
        that still yields the body when it had to be read."""
        found = IN_PATH.search(path)
        if found:
            return found["beat"] or found["media"], receive
        if IN_QUERY.search(path):
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash")
            return (values[0] if values else None), receive
        if scope.get("method") != "POST" or not IN_BODY.search(path):
            return None, receive
        body = await read_body(receive, MAX_BODY_BYTES)
        if body is None:
            raise _TooLarge
        try:
            named = json.loads(body).get("session_hash") if body else None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, RecursionError):
            named = None  # not a JSON object: no session named
        return (str(named) if named else None), replaying(body, receive)
