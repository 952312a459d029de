"""A class in the browser (issue 37): students join by the workshop's link, answer a checked step and
mark it done; the lecturer's view updates without a reload; a student's reload keeps the membership."""

from __future__ import annotations

import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines.lessons import workshops  # noqa: E402

pytestmark = pytest.mark.browser


def _join(page: Page, name: str) -> None:
    page.get_by_role("tab", name="Lessons", exact=True).click()
    code = page.locator("#workshop-code input, #workshop-code textarea").first
    expect(code).not_to_have_value("", timeout=30_000)  # filled from the link
    page.locator("#workshop-name input, #workshop-name textarea").first.fill(name)
    page.locator("#workshop-join-button").click()
    expect(page.locator("#workshop-member")).to_contain_text(f"as {name}", timeout=30_000)
    expect(page.locator("#workshop-question")).to_contain_text("Is the text the same?", timeout=30_000)


def _answer(page: Page, text: str) -> None:
    page.locator("#workshop-answer input, #workshop-answer textarea").first.fill(text)
    page.locator("#workshop-check").click()


def test_a_lecturer_sees_students_join_and_answer(page: Page, open_page, app_url):
    made = workshops.create("Browser class", ["1_decoding"], tabs=["generate", "inside"])
    lecturer = page
    lecturer.get_by_role("tab", name="Lessons", exact=True).click()
    expect(lecturer.locator("#workshop-done")).to_be_hidden()  # only a student marks steps done
    lecturer.get_by_text("Run a class (lecturers)").click()
    lecturer.locator("#workshop-pick input").click()
    lecturer.get_by_role("option", name="Browser class").click()
    link = f"{app_url.rstrip('/')}{made.link}"
    with open_page(link) as ada, open_page(link) as bob:
        _join(ada, "Ada")
        _join(bob, "Bob")
        _answer(ada, "yes, word for word")
        expect(ada.locator("#workshop-verdict")).to_contain_text("Right", timeout=30_000)
        _answer(bob, "no, it changes")
        expect(bob.locator("#workshop-verdict")).to_contain_text("Not quite", timeout=30_000)
        assert "word for word" not in bob.locator("#workshop-verdict").inner_text(), "no reveal in this workshop"
        ada.locator("#workshop-done").click()
        # the lecturer's tables refresh on their own (a timer), no reload
        students = lecturer.locator("#workshop-students")
        expect(students).to_contain_text("Ada", timeout=30_000)
        expect(students).to_contain_text("Bob", timeout=30_000)
        expect(lecturer.locator("#workshop-funnel")).to_contain_text(re.compile(r"1 / 2"), timeout=30_000)
        # a reload keeps the student in the class (the browser keeps the membership)
        ada.reload()
        ada.get_by_role("tab", name="Generate").wait_for()
        ada.get_by_role("tab", name="Lessons", exact=True).click()
        expect(ada.locator("#workshop-member")).to_contain_text("as Ada", timeout=30_000)
        assert "Bob" not in ada.content(), "students never see each other"
    report = workshops.status("Browser class")
    assert {p["name"]: p["checks_right"] for p in report["students"]} == {"Ada": 1, "Bob": 0}
