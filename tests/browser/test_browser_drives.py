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

from pipelines.labels import drives, preferences  # noqa: E402
from tests.browser_flows import as_annotator, next_item, pick_drive  # noqa: E402

pytestmark = pytest.mark.browser


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
    as_annotator(page, "student")
    page.get_by_role("button", name="Next item (N)").click()
    expect(page.get_by_text("Choose a label drive").first).to_be_visible(timeout=30_000)
    pick_drive(page, "class")
    first = next_item(page)
    progress = page.locator("#drive-progress")
    expect(progress).to_contain_text("You: 0 done of 1 assigned, 1 open", timeout=30_000)
    expect(progress).to_contain_text("Drive class: 0 of 6 labels (0%)")
    page.locator("#vote-a").click()
    expect(progress).to_contain_text("You: 1 done of 1 assigned · 2 more available to you.", timeout=30_000)
    expect(progress).to_contain_text("1 of 6 labels (17%)")

    # reload: the next item is held for the annotator, and comes back after another reload
    page.reload()
    as_annotator(page, "student")
    pick_drive(page, "class")
    second = next_item(page)
    assert second != first
    expect(progress).to_contain_text("You: 1 done of 2 assigned, 1 open", timeout=30_000)
    page.reload()  # the page comes back where it was: the held item on screen, nothing new taken (issue 42, W8)
    held = page.locator("#pref-item-id textarea, #pref-item-id input").first
    expect(held).to_have_value(second, timeout=30_000)
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
