"""The playground as an MCP server for agents (PLAYGROUND_MCP=1; off by default): the read-only
tools of `pipelines.agents.tools`, and nothing else, under the app's own access rules.

Gradio's `mcp_server=True` makes a tool of every public named endpoint, the training, labelling and
upload ones included, and its MCP routes answer without the app's sign-in. So, measured against
gradio 6.31 with a real `mcp` client:

- each read-only tool is an API endpoint of its own (`gr.api`, named `mcp_<tool>`), and the MCP
  server's tool map holds those and only those (`ReadOnlyServer`): the map is what gradio both lists
  and calls through, so a write endpoint is neither offered nor callable ("Unknown tool");
- the tools are not queued: gradio's MCP server runs such a call in this process, with the caller's
  request. A queued tool would loop back over HTTP through gradio_client, without the caller's
  sign-in. At most `MODEL_CONCURRENCY` tool calls run at once; the rest wait, then are refused;
- `Access` guards the MCP routes: with PLAYGROUND_AUTH a caller signs in with HTTP Basic (the same
  accounts and the same throttle as the login page) or a signed-in browser's cookie; on a Space with
  Hugging Face sign-in, anonymous visitors may use them (every tool is read-only, which is what they
  may do in the page). Bodies over `MAX_BODY_BYTES` are refused before they are read whole;
- `GRADIO_MCP_SERVER` no longer turns gradio's unfiltered server on behind the app's back: `launch`
  is always told explicitly.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections.abc import Callable
from typing import Any

import gradio as gr
import gradio.mcp
from starlette.requests import cookie_parser

from pipelines.access import SignInThrottled, get_policy, login_throttle
from pipelines.agents import tools
from pipelines.config import get_settings
from pipelines.errors import PlaygroundError

from .controls import MODEL_CONCURRENCY
from .visitors import read_body, refuse, replaying

PATH = "/gradio_api/mcp"
ENDPOINT_PREFIX = "mcp_"
WAIT_SECONDS = 120.0  # a tool call waits this long for one of the slots, then is refused
MAX_BODY_BYTES = 4 * 2**20  # one JSON-RPC message: a prompt is at most 200,000 characters
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
REALM = 'Basic realm="LLM Playground MCP", charset="UTF-8"'


class Busy(PlaygroundError):
    """Every slot for tool calls stayed taken for WAIT_SECONDS."""

    exit_code = 1


def enabled() -> bool:
    return get_settings().mcp


def _bounded(fn: Callable[..., str], slots: threading.BoundedSemaphore) -> Callable[..., str]:
    """`fn` run only while it holds one of the slots (its signature and docstring kept: they are the tool's)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> str:
        if not slots.acquire(timeout=WAIT_SECONDS):
            raise Busy(f"The model is busy with other tool calls: try again in a minute ({fn.__name__}).")
        try:
            return fn(*args, **kwargs)
        finally:
            slots.release()

    return call


def register() -> None:
    """Inside the app's Blocks: one unqueued API endpoint per read-only tool (only when MCP is on)."""
    slots = threading.BoundedSemaphore(MODEL_CONCURRENCY)
    for fn in tools.READ_ONLY:
        gr.api(_bounded(fn, slots), api_name=ENDPOINT_PREFIX + fn.__name__, queue=False)


class ReadOnlyServer(gradio.mcp.GradioMCPServer):
    """Gradio's MCP server with the read-only tools as its whole tool map, named as the functions are."""

    def get_tool_to_endpoint(self) -> dict[str, str]:
        named = self.api_info["named_endpoints"]
        found = {self.tool_prefix + fn.__name__: f"/{ENDPOINT_PREFIX}{fn.__name__}" for fn in tools.READ_ONLY}
        missing = sorted(endpoint for endpoint in found.values() if endpoint not in named)
        if missing:  # register() was not called in this app: serve nothing rather than something else
            raise RuntimeError(f"the MCP tools' endpoints are missing: {', '.join(missing)}")
        return found


def launch_kwargs() -> dict[str, Any]:
    """What `launch` needs: gradio's MCP server on (filtered) or explicitly off."""
    if not enabled():
        return {"mcp_server": False}
    gradio.mcp.GradioMCPServer = ReadOnlyServer  # type: ignore[misc]  # gradio builds it by this name at launch
    return {"mcp_server": True}


# --- who may call --------------------------------------------------------------------------------


def _header(scope: dict, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == name), None)


def _basic(value: str | None) -> tuple[str, str] | None:
    """HTTP Basic credentials, or None for anything else (a malformed header is no credentials)."""
    scheme, _, encoded = (value or "").partition(" ")
    encoded = encoded.strip()
    if scheme.lower() != "basic" or not BASE64.fullmatch(encoded) or len(encoded) % 4:
        return None
    user, colon, password = base64.b64decode(encoded).decode("utf-8", "replace").partition(":")
    return (user, password) if colon else None


def _signed_in_browser(scope: dict) -> bool:
    """A browser signed in through gradio's login page (its access-token cookie names a user)."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not tokens or cookie_id is None:
        return False
    jar = cookie_parser(_header(scope, b"cookie") or "")  # never raises: a malformed pair is skipped
    return any(
        tokens.get(jar.get(name, "")) for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}")
    )


def refusal(scope: dict) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
    """Why this MCP request may not go on (status, reason, extra headers), or None when it may."""
    policy = get_policy()
    if not policy.gradio_auth() or _signed_in_browser(scope):
        return None  # no password sign-in (a laptop, or a Space where anonymous visitors may read)
    credentials = _basic(_header(scope, b"authorization"))
    if credentials is None:
        return (
            401,
            "Sign in: send HTTP Basic credentials of a PLAYGROUND_AUTH account.",
            [(b"www-authenticate", REALM.encode())],
        )
    address = (scope.get("client") or (None,))[0]
    wait = login_throttle().wait_seconds(credentials[0], address)  # asked first: a locked guesser learns nothing
    if wait > 0:
        throttled = SignInThrottled(wait)
        return 429, str(throttled), [(b"retry-after", str(throttled.seconds).encode())]
    ok = policy.check_password(*credentials, address)
    if not ok:
        return 401, "Wrong name or password.", [(b"www-authenticate", REALM.encode())]
    return None


class Access:
    """ASGI middleware in front of the MCP routes: the app's sign-in, and a bound on a message's size."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or not scope.get("path", "").startswith(PATH):
            await self.app(scope, receive, send)
            return
        refused = refusal(scope)
        if refused is not None:
            await refuse(send, *refused)
            return
        if scope.get("method") == "POST":
            body = await read_body(receive, MAX_BODY_BYTES)
            if body is None:
                await refuse(send, 413, f"An MCP message is at most {MAX_BODY_BYTES // 2**20} MB.")
                return
            receive = replaying(body, receive)
        await self.app(scope, receive, send)
