"""The RAG flow in the browser on the real bundled model: a document ingested and a cited answer grounded in it.

The tiny model of test_browser.py streams noise, so it cannot show that the answer comes from the
document; this test runs the app on SmolLM2 itself, greedy, and asks for a name only the document knows.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from tests.browser_flows import ingest_document
from tests.helpers import launched_app
from tests.rag_corpus import RAILWAY_TXT

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def app_url(real_handle):
    """Overrides the tiny-model app of the browser conftest: the full app on the bundled model."""
    from pipelines.engine import models

    models.set_handle(real_handle)
    with launched_app(real_handle) as url:
        yield url
    models.set_handle(None)


def test_document_ingested_and_answer_grounded_in_it(page: Page, tmp_path):
    doc = tmp_path / "railway.txt"
    doc.write_text(RAILWAY_TXT, encoding="utf-8")
    for label, value in (("Temperature", "0"), ("Max new tokens", "32")):  # the sidebar's shared sampling settings
        box = page.get_by_label(f"number input for {label}", exact=True).first
        box.fill(value)
        box.press("Enter")
        expect(box).to_have_value(value)
    ingest_document(page, "railway", doc)
    page.get_by_label("Question", exact=True).fill("What is the steam locomotive called?")
    page.get_by_role("button", name="Ask").click()
    passage = page.locator("#passage-1")
    expect(passage).to_contain_text("[1]", timeout=120_000)
    expect(passage).to_contain_text("railway.txt")
    # only the document knows the name; the model's answer from memory (shown beside it) does not
    grounded = page.locator("#rag-grounded")
    expect(grounded).to_contain_text("Grey Heron", timeout=180_000)
    # SmolLM2 writes no [n] itself: the finished answer is checked against the passages and cites [1], linked to it
    expect(grounded).to_contain_text("Sources: [1] railway.txt", timeout=60_000)
    citation = grounded.locator("a[href='#passage-1']").first
    expect(citation).to_have_text("[1]")
    citation.click()
    expect(page).to_have_url(re.compile("#passage-1$"))
