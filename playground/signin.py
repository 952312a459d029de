"""Gradio's password sign-in, throttled by the app (pipelines.access.LoginThrottle).

Gradio calls an auth function with the name and password only; the client's address, which the
throttle also counts, reaches it through a context variable set by a small ASGI middleware on the
/login route. A throttled attempt is answered 400 like a wrong password (Gradio's login page shows
nothing for other codes), with the reason in `detail` and a Retry-After header for scripts.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Callable

from pipelines.access import AccessPolicy, SignInThrottled

_client: ContextVar[str | None] = ContextVar("client_address", default=None)


class ClientAddress:
    """ASGI middleware: remember who is signing in, for the duration of a /login request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path", "").rstrip("/").endswith("/login"):
            token = _client.set((scope.get("client") or (None,))[0])
            try:
                await self.app(scope, receive, send)
            finally:
                _client.reset(token)
        else:
            await self.app(scope, receive, send)


def auth_check(policy: AccessPolicy) -> Callable[[str, str], bool]:
    """The `auth=` function for `launch`: PLAYGROUND_AUTH's accounts, throttled."""
    from fastapi import HTTPException

    def check(user: str, password: str) -> bool:
        try:
            return policy.check_password(user, password, _client.get())
        except SignInThrottled as error:
            raise HTTPException(
                status_code=400, detail=str(error), headers={"Retry-After": str(error.seconds)}
            ) from None

    return check


def launch_kwargs(policy: AccessPolicy) -> dict[str, Any]:
    """What `launch` needs for throttled sign-in (nothing when PLAYGROUND_AUTH is off)."""
    if not policy.gradio_auth():
        return {}
    from starlette.middleware import Middleware

    return {
        "auth": auth_check(policy),
        "auth_message": "Sign in to use the playground (accounts come from PLAYGROUND_AUTH). After 5 failed attempts a "
        "name waits before the next one, twice as long each time.",
        "app_kwargs": {"middleware": [Middleware(ClientAddress)]},
    }
