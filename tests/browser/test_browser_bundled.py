"""The RAG flow in the browser on the real bundled model: a document ingested and an answer grounded in it.

The tiny model of test_browser.py streams noise, so it cannot show that the answer comes from the
document; this test runs the app on SmolLM2 itself, greedy, and asks for a name only the document knows.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)")
from playwright.sync_api import Page, expect  # noqa: E402

from tests.conftest import free_port
from tests.rag_corpus import RAILWAY_TXT

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def app_url(real_handle):
    """Overrides the tiny-model app of the browser conftest: the full app on the bundled model."""
    import app as app_module
    from pipelines import models

    models.set_handle(real_handle)
    demo = app_module.build_app(real_handle)
    demo.queue(default_concurrency_limit=4)
    kwargs = app_module.launch_kwargs()
    kwargs.update(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    _, url, _ = demo.launch(**kwargs)
    yield url
    demo.close()
    models.set_handle(None)


def test_document_ingested_and_answer_grounded_in_it(page: Page, tmp_path):
    doc = tmp_path / "railway.txt"
    doc.write_text(RAILWAY_TXT, encoding="utf-8")
    for label, value in (("Temperature", "0"), ("Max new tokens", "32")):  # the sidebar's shared sampling settings
        box = page.get_by_label(f"number input for {label}", exact=True).first
        box.fill(value)
        box.press("Enter")
        expect(box).to_have_value(value)
    page.get_by_role("tab", name="RAG").click()
    page.get_by_label("Name", exact=True).fill("railway")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("railway — 0 documents")).to_be_visible()  # the new collection is the selected one
    page.locator("#rag-files input[type=file]").set_input_files(str(doc))
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Ingest").click()
    expect(page.get_by_text(re.compile(r"railway\.txt: \d+ chunks")).first).to_be_visible(timeout=120_000)
    page.get_by_label("Question", exact=True).fill("What is the steam locomotive called?")
    page.get_by_role("button", name="Ask").click()
    passage = page.locator("#passage-1")
    expect(passage).to_contain_text("[1]", timeout=120_000)
    expect(passage).to_contain_text("railway.txt")
    # only the document knows the name; the model's answer from memory (shown beside it) does not
    expect(page.locator("#rag-grounded")).to_contain_text("Grey Heron", timeout=180_000)
