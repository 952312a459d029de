"""Access checks for event handlers: one decorator per kind of action, enforced server-side.

Hiding a button is not access control -- the same handler is a named API endpoint -- so the
check runs inside the handler, on the identity Gradio attaches to the request.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from pipelines.access import get_policy

from .sidebar import signed_in_user


def _request_of(signature: inspect.Signature, args: tuple, kwargs: dict) -> gr.Request | None:
    bound = signature.bind_partial(*args, **kwargs)
    return bound.arguments.get("request")


def _guard(check: Callable[[str | None, str], None], action: str) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        if "request" not in signature.parameters:
            raise TypeError(f"{fn.__name__} needs a `request: gr.Request | None = None` parameter to be guarded")

        def enforce(args: tuple, kwargs: dict) -> None:
            check(signed_in_user(_request_of(signature, args, kwargs)), action)  # AccessDenied: "Not allowed"

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
                enforce(args, kwargs)
                yield from fn(*args, **kwargs)

            return generator_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            enforce(args, kwargs)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def admin_only(action: str) -> Callable[[Callable], Callable]:
    """Only PLAYGROUND_ADMINS (or anyone, when no sign-in and no admin list is configured)."""
    return _guard(lambda user, what: get_policy().check_admin(user, what), action)


def signed_in(action: str) -> Callable[[Callable], Callable]:
    """Anyone signed in, once sign-in is on (anyone at all otherwise)."""
    return _guard(lambda user, what: get_policy().check_identity(user, what), action)
