"""Browser steps shared by the tiny-model and bundled-model browser tests."""

from __future__ import annotations

import re
from pathlib import Path


def ingest_document(page, collection: str, path: Path) -> None:
    """RAG tab: create `collection`, upload `path` and ingest it, waiting for each step to show."""
    from playwright.sync_api import expect  # only the browser tests import this module

    page.get_by_role("tab", name="RAG").click()
    page.get_by_label("Name", exact=True).fill(collection)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text(f"{collection} — 0 documents")).to_be_visible()  # the new collection is the selected one
    page.locator("#rag-files input[type=file]").set_input_files(str(path))
    # uploaded, so Ingest sends it; the file list shows the name's stem and suffix in separate elements,
    # which a loaded page can render with whitespace between them ("bees .md")
    shown = re.compile(re.escape(path.stem) + r"\s*" + re.escape(path.suffix))
    expect(page.locator("#rag-files")).to_contain_text(shown, timeout=30_000)
    page.get_by_role("button", name="Ingest").click()
    expect(page.get_by_text(re.compile(re.escape(path.name) + r": \d+ chunks")).first).to_be_visible(timeout=120_000)
