"""One translator from the error family to page messages, applied to every handler of the app."""

from __future__ import annotations

import inspect

import gradio as gr
import pytest

from pipelines.access import AccessDenied
from pipelines.errors import InvalidParameter
from playground.errors import UserError, translated


def _plain(text: str, request: gr.Request = None) -> str:
    if not text:
        raise InvalidParameter("text", "is empty")
    return text


def _stream(text: str):
    yield text
    raise AccessDenied("only admins may do that")


def test_plain_and_streaming_handlers_refuse_with_page_messages():
    handler = translated(_plain)
    assert handler("hi") == "hi"
    assert inspect.signature(handler) == inspect.signature(_plain)  # Gradio still fills `request`
    with pytest.raises(UserError, match="text: is empty"):
        handler("")
    stream = translated(_stream)
    assert inspect.isgeneratorfunction(stream)  # Gradio streams it as before
    updates = stream("a")
    assert next(updates) == "a"
    with pytest.raises(UserError, match="only admins") as refused:
        next(updates)
    assert refused.value.title == "Not allowed"
    assert translated(handler) is handler  # wrapping twice changes nothing


def test_an_unexpected_failure_is_not_dressed_as_a_refusal():
    def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        translated(broken)()


def test_every_handler_of_the_app_is_translated():
    import app as app_module

    demo = app_module.build_app("tiny")
    handlers = [fn.fn for fn in demo.fns.values() if fn.fn is not None]
    assert len(handlers) > 100
    assert all(getattr(fn, "__translated__", False) for fn in handlers)
