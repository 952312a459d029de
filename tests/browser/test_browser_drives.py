"""A label drive in the browser: the operator sets it up, an annotator works through it, reloads and
comes back, and sees their progress and the drive's."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines import drives, preferences  # noqa: E402

pytestmark = pytest.mark.browser
DRIVE_MODE = "Label drive: the next item assigned to you"


def _as_annotator(page: Page, name: str) -> None:
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_role("tab", name="Label", exact=True).click()
    page.get_by_label("Your name").fill(name)
    page.get_by_label(DRIVE_MODE).check()


def _pick_drive(page: Page, name: str) -> None:
    """Open the picker and choose; opening it refills it, and a person whose list was refilled
    while open simply opens it again."""
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


def _next(page: Page) -> str:
    box = page.locator("#pref-item-id textarea, #pref-item-id input").first
    before = box.input_value()
    page.get_by_role("button", name="Next item (N)").click()
    expect(box).not_to_have_value(before or "", timeout=30_000) if before else expect(box).not_to_have_value("")
    return box.input_value()


def test_annotator_progress_through_a_drive(page: Page, tmp_path):
    # the operator: create the drive and fill it from a file, in the Dataset tab
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_text("Label drives", exact=True).click()
    page.locator("#drive-name input, #drive-name textarea").first.fill("class")
    page.get_by_label("number input for Annotators per item (overlap)").fill("2")
    page.locator("#drive-save").click()
    expect(page.get_by_text(re.compile(r"Created drive class"))).to_be_visible(timeout=30_000)
    items = tmp_path / "items.jsonl"
    items.write_text(
        "\n".join(json.dumps({"prompt": f"Question {i}?", "responses": [f"yes {i}", f"no {i}"]}) for i in range(3))
    )
    page.locator("#drive-items input[type=file]").set_input_files(str(items))
    expect(page.get_by_text(re.compile(r"Added 3 items to class"))).to_be_visible(timeout=30_000)

    # an annotator forgets to pick the drive, then works through it
    _as_annotator(page, "student")
    page.get_by_role("button", name="Next item (N)").click()
    expect(page.get_by_text("Choose a label drive").first).to_be_visible(timeout=30_000)
    _pick_drive(page, "class")
    first = _next(page)
    progress = page.locator("#drive-progress")
    expect(progress).to_contain_text("You: 0 done of 1 assigned, 1 open", timeout=30_000)
    expect(progress).to_contain_text("Drive class: 0 of 6 labels (0%)")
    page.locator("#vote-a").click()
    expect(progress).to_contain_text("You: 1 done of 1 assigned · 2 more available to you.", timeout=30_000)
    expect(progress).to_contain_text("1 of 6 labels (17%)")

    # reload: the next item is held for the annotator, and comes back after another reload
    page.reload()
    _as_annotator(page, "student")
    _pick_drive(page, "class")
    second = _next(page)
    assert second != first
    expect(progress).to_contain_text("You: 1 done of 2 assigned, 1 open", timeout=30_000)
    page.reload()
    _as_annotator(page, "student")
    _pick_drive(page, "class")
    assert _next(page) == second, "a reload does not take a second place"
    page.locator("#vote-b").click()
    expect(progress).to_contain_text("You: 2 done of 2 assigned", timeout=30_000)
    assert [label.annotator for label in preferences.get_item(second).labels] == ["student"]
    assert drives.progress("class", "student")["you"] == {
        "name": "student",
        "done": 2,
        "assigned": 2,
        "open": 0,
        "available": 1,
    }

    # the operator sees it in the drive table
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_role("button", name="Refresh").click()
    page.get_by_text("Label drives", exact=True).click()  # the page was reloaded: the panel is closed again
    expect(page.locator("#drives-box")).to_contain_text("2 / 6 (33%)", timeout=30_000)
