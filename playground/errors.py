"""How the UI refuses something a person did: a message on the page, one line in the server log.

Pipelines refuse with the error family (`pipelines.errors.PlaygroundError`); `translate_errors`
wraps every handler of the built app once, so no tab writes its own `except … → gr.Error`.

Gradio prints a full traceback for every `gr.Error` unless told not to; for an empty prompt or a
name already taken that buries real failures in the log. Unexpected exceptions keep their
tracebacks (they are not UserErrors).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import gradio as gr

from pipelines.errors import PlaygroundError

log = logging.getLogger("playground")


class UserError(gr.Error):
    """A refusal the person can act on: one message that stays until it is dismissed (a reason that
    fades while the person reads elsewhere is lost), logged as one line. The outputs of the event keep
    what they showed: the page's style sheet hides Gradio's red "Error" pill over each of them
    (`assets/style.css`), which said nothing and covered their content."""

    def __init__(
        self, message: str = "That did not work.", *, title: str = "Error", duration: float | None = None
    ) -> None:
        super().__init__(message, duration=duration, title=title, print_exception=False)
        first = str(message).strip().splitlines()[0][:300] if str(message).strip() else title
        log.info("refused (%s): %s", title, first)


# --- the one translator: the error family becomes what a person reads -----------------------------

TITLES = {"AccessDenied": "Not allowed", "SignInRequired": "Sign in", "SignInThrottled": "Sign in"}


def refusal(error: PlaygroundError) -> UserError:
    """A pipeline's refusal as the page shows it: its own message, titled by its kind."""
    return UserError(str(error), title=TITLES.get(type(error).__name__, "Error"))


def translated(fn: Callable[..., Any], before: Callable[[], None] | None = None) -> Callable[..., Any]:
    """`fn` with the error family turned into page messages (same kind of callable, same signature);
    `before` runs first and may refuse the same way (a workshop's hidden tab, `playground.tab_guard`).

    Gradio inspects the handler to decide how to run it (generator or not, which parameters it
    fills itself), so the wrapper is the same kind of function and `functools.wraps` keeps the
    signature visible.
    """
    if getattr(fn, "__translated__", False):
        return fn

    def ready() -> None:
        if before is not None:
            before()

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen(*args: Any, **kwargs: Any) -> Any:
            try:
                ready()
                async for item in fn(*args, **kwargs):
                    yield item
            except PlaygroundError as error:
                raise refusal(error) from error

        wrapper: Any = agen
    elif inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            try:
                ready()
                yield from fn(*args, **kwargs)
            except PlaygroundError as error:
                raise refusal(error) from error

        wrapper = gen
    elif inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coro(*args: Any, **kwargs: Any) -> Any:
            try:
                ready()
                return await fn(*args, **kwargs)
            except PlaygroundError as error:
                raise refusal(error) from error

        wrapper = coro
    else:

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            try:
                ready()
                return fn(*args, **kwargs)
            except PlaygroundError as error:
                raise refusal(error) from error

        wrapper = plain
    wrapper.__translated__ = True
    wrapper.__before__ = before  # what runs first, for anyone auditing the app (the tab guard's tests)
    return wrapper


def translate_errors(demo: gr.Blocks, before: Mapping[int, Callable[[], None]] | None = None) -> None:
    """Every handler of the app refuses with a page message instead of "Error" (called once, when it
    is built); `before[fn id]` runs ahead of that handler."""
    for fn_id, block_fn in demo.fns.items():
        if block_fn.fn is not None:
            block_fn.fn = translated(block_fn.fn, (before or {}).get(fn_id))
