"""The app serves before its model has loaded: the page works, model-backed parts say they are waiting.

The load is held back by a gate (the real load is timed by bench/startup_bench.py, not here), so the
page can be checked in the state a visitor sees during the first seconds after a start.
"""

from __future__ import annotations

import re
import threading

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines.config import get_settings
from pipelines.engine import models
from tests.browser_flows import open_advanced  # noqa: E402
from tests.helpers import launched_app

pytestmark = pytest.mark.browser


@pytest.fixture
def gate():
    return threading.Event()


@pytest.fixture
def app_url(tiny_handle, gate, monkeypatch):
    """Overrides the browser conftest's app: launched while the model is still loading."""

    def held_load(*args, **kwargs):
        gate.wait(60)
        return tiny_handle

    monkeypatch.setattr(models, "load_handle", held_load)
    models.load_in_background(get_settings())
    with launched_app(tiny_handle) as url:
        yield url
    gate.set()
    models.set_handle(None)


def test_page_serves_while_the_model_loads_then_fills_in(page: Page, gate):
    card = page.get_by_text(re.compile("loading the weights"))
    expect(card).to_be_visible()
    page.get_by_role("tab", name="Chat").click()
    system = page.get_by_role("textbox", name=re.compile("^System prompt"))
    expect(system).to_be_disabled()  # the model's default prompt is not known yet
    page.get_by_role("tab", name="Fine-tune").click()
    open_advanced(page)
    expect(page.get_by_label("q_proj", exact=True)).to_be_disabled()

    # a generation asked for now waits for the weights instead of failing
    page.get_by_role("tab", name="Generate").click()
    page.get_by_label("Prompt", exact=True).first.fill("Once upon a time")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_timeout(500)
    assert page.locator("#gen-output textarea").input_value() == ""

    gate.set()
    expect(page.locator("#gen-output textarea")).not_to_have_value("", timeout=60_000)
    expect(page.get_by_text(re.compile(r"tiny-llama\*?\*? · \d+M parameters"))).to_be_visible()
    expect(card).to_have_count(0)
    page.get_by_role("tab", name="Chat").click()
    expect(system).to_be_enabled()
    expect(system).to_have_value(re.compile("You are a helpful AI assistant"))
    page.get_by_role("tab", name="Fine-tune").click()
    expect(page.get_by_label("q_proj", exact=True)).to_be_enabled()
    expect(page.get_by_label("q_proj", exact=True)).to_be_checked()
