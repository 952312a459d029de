"""Browser steps shared by the tiny-model and bundled-model browser tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def set_number(page: Any, label: str, value: str) -> None:
    """A sidebar or form number, typed into the box beside its slider and confirmed."""
    from playwright.sync_api import expect

    box = page.get_by_label(f"number input for {label}", exact=True).first
    box.fill(value)
    box.press("Enter")
    expect(box).to_have_value(value)


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


# --- label drives -----------------------------------------------------------------------------

DRIVE_MODE = "Label drive: the next item assigned to you"


def as_annotator(page: Any, name: str) -> None:
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_role("tab", name="Label", exact=True).click()
    page.get_by_label("Your name").fill(name)
    page.get_by_label(DRIVE_MODE).check()


def pick_drive(page: Any, name: str) -> None:
    """Open the picker and choose; opening it refills it, and a person whose list was refilled
    while open simply opens it again."""
    from playwright.sync_api import expect

    for _ in range(3):
        page.locator("#label-drive input").click()
        option = page.get_by_role("option", name=name)
        try:
            option.wait_for(timeout=10_000)
            option.click(timeout=10_000)
            break
        except Exception:  # noqa: BLE001 - the list was refilled under the pointer: open it again
            page.keyboard.press("Escape")
    expect(page.locator("#label-drive input")).to_have_value(name)


def next_item(page: Any) -> str:
    from playwright.sync_api import expect

    box = page.locator("#pref-item-id textarea, #pref-item-id input").first
    before = box.input_value()
    page.get_by_role("button", name="Next item (N)").click()
    expect(box).not_to_have_value(before or "", timeout=30_000) if before else expect(box).not_to_have_value("")
    return box.input_value()


# --- fine-tuning --------------------------------------------------------------------------------

FT_ADVANCED = "Advanced settings: layers, batches, precision, evaluation"


def open_advanced(page: Any) -> None:
    """Fine-tune's advanced settings are folded (issue 42: the common path fits one screen); open them once."""
    if not page.get_by_label("Batch size").is_visible():
        page.get_by_text(FT_ADVANCED).click()
        page.get_by_label("Batch size").wait_for()
