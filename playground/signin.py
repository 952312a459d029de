"""Gradio's password sign-in, throttled by the app (pipelines.access.LoginThrottle).

Gradio calls an auth function with the name and password only; the client's address, which the
throttle also counts, reaches it through a context variable set by the visitors middleware
(`playground.visitors`), which reads it from the proxy's header only behind a trusted proxy. A throttled attempt is answered 400 like a wrong password (Gradio's login page shows
nothing for other codes), with the reason in `detail` and a Retry-After header for scripts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.access import AccessPolicy, SignInThrottled

from .visitors import client_of_request


def auth_check(policy: AccessPolicy) -> Callable[[str, str], bool]:
    """The `auth=` function for `launch`: PLAYGROUND_AUTH's accounts, throttled."""
    from fastapi import HTTPException

    def check(user: str, password: str) -> bool:
        try:
            return policy.check_password(user, password, client_of_request.get())
        except SignInThrottled as error:
            raise HTTPException(
                status_code=400, detail=str(error), headers={"Retry-After": str(error.seconds)}
            ) from None

    return check


def launch_kwargs(policy: AccessPolicy) -> dict[str, Any]:
    """What `launch` needs for throttled sign-in (nothing when PLAYGROUND_AUTH is off)."""
    if not policy.gradio_auth():
        return {}
    return {
        "auth": auth_check(policy),
        "auth_message": "Sign in to use the playground (accounts come from PLAYGROUND_AUTH). After 5 failed attempts a "
        "name waits before the next one from the same place, twice as long each time.",
    }
