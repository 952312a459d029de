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


def test_each_tabs_handlers_check_the_workshop_first_and_the_pages_do_not():
    """The tab guard (issue 37) reads which handler is whose tab from the built app: every tab's own
    endpoints are guarded, what the page load or the sidebar starts is not (a student whose class
    hides a tab must not be greeted with its refusals)."""
    import app as app_module

    demo = app_module.build_app("tiny")
    tab_of: dict[str, str | None] = {}
    for fn in demo.fns.values():
        before = getattr(fn.fn, "__before__", None)
        tab_of.setdefault(fn.api_name, getattr(before, "tab", None))
    expected = {
        "generate": "generate",
        "token_tree_grow": "generate",
        "chat": "chat",  # gr.api: an endpoint with no button, registered by the Chat tab
        "clear_chat": "chat",
        "start_finetune": "finetune",
        "classify": "finetune",
        "vote": "preferences",
        "drive_next": "preferences",
        "start_alignment": "preferences",
        "rag_ask": "rag",
        "reason": "reasoning",
        "inside_score": "inside",
    }
    assert {name: tab_of.get(name) for name in expected} == expected
    page_level = ["list_adapters", "inspect", "identity", "model_ready", "workshop_join", "workshop_answer"]
    assert {name: tab_of.get(name) for name in page_level} == dict.fromkeys(page_level)
    loaded = [fn for fn in demo.fns.values() if any(event == "load" for _, event in fn.targets)]
    assert loaded and not any(getattr(fn.fn, "__before__", None) for fn in loaded)
