"""A public label drive in the browser (issue 35): two anonymous visitors label, reload and come back as
themselves; the tables show aliases, never ids; what a visitor writes never reaches the store."""

from __future__ import annotations

import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines import access  # noqa: E402
from pipelines.labels import drives, preferences  # noqa: E402
from pipelines.store import db  # noqa: E402
from tests.browser_flows import DRIVE_MODE, next_item, pick_drive  # noqa: E402
from tests.helpers import as_public_space, launched_app, two_response_items  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture
def public_url(use_tiny, monkeypatch):
    """A Space with `hf_oauth: true` and PLAYGROUND_ANONYMOUS_LABELS=1, and a drive of four items."""
    as_public_space(monkeypatch, anonymous_labels=True)
    drives.save("public", drives.DriveSettings(overlap=1, gold_rate=0.0))
    drives.add_items("public", two_response_items(4))
    with launched_app(use_tiny) as url:
        yield url
    db.dispose_all()


def _label_tab(page: Page) -> None:
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_role("tab", name="Label", exact=True).click()


def test_two_anonymous_visitors_label_a_public_drive_and_come_back_as_themselves(open_page, public_url):
    with open_page(public_url) as first, open_page(public_url) as second:
        cookie = next(c for c in first.context.cookies() if c["name"] == access.VISITOR_COOKIE)
        assert cookie["httpOnly"], "the visitor's id is out of the page's scripts' reach"
        served = {}
        for page, who in ((first, "first"), (second, "second")):
            _label_tab(page)
            page.get_by_label(DRIVE_MODE).check()
            pick_drive(page, "public")
            served[who] = next_item(page)
        assert served["first"] != served["second"]  # one item each (overlap 1)

        # the first visitor reloads (a new Gradio session): the same visitor, so its held item comes back
        first.reload()
        first.get_by_role("tab", name="Generate").wait_for()
        held = first.locator("#pref-item-id textarea, #pref-item-id input").first
        expect(held).to_have_value(served["first"], timeout=30_000)  # back on its tab, its item on screen
        first.locator("#vote-a").click()
        expect(first.locator("#drive-progress")).to_contain_text("You: 1 done of 1 assigned", timeout=30_000)

        # what a visitor writes never reaches the store: typing a prompt is for signed-in people
        second.get_by_label("Type a prompt").check()
        second.get_by_role("button", name="Next item (N)").click()
        expect(second.get_by_text(re.compile("Sign in to create items to label")).first).to_be_visible(timeout=30_000)

        # the Dataset tab shows an alias for the anonymous label, no ids and no gold accuracy
        second.get_by_role("tab", name="Dataset").click()
        second.get_by_role("button", name="Refresh").first.click()
        [label] = preferences.get_item(served["first"]).labels
        second.get_by_text(access.alias(label.annotator)).first.wait_for(state="attached", timeout=30_000)
        html = second.content()
        assert label.annotator not in html and "gold right" not in html
    assert len(preferences.list_items()) == 4
