"""A class in the browser (issue 37): a lecturer creates a workshop on the page, five students join by
its link in browsers of their own, answer a checked step, set up and finish the next one; the
lecturer's view updates without a reload, answers are revealed when the lecturer says so, the
tabs the workshop does not use are hidden, and a student's reload keeps the membership."""

from __future__ import annotations

import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines.labels import drives  # noqa: E402
from pipelines.lessons import workshops  # noqa: E402
from tests.browser_flows import DRIVE_MODE, set_number  # noqa: E402
from tests.helpers import two_response_items  # noqa: E402

pytestmark = pytest.mark.browser

STUDENTS = ["Ada", "Bob", "Cy", "Dee", "Eve"]
PINNED_PENALTY = "1.3"  # the lecturer's sidebar when the class is created; no step of the lesson sets it


def _join(page: Page, name: str) -> None:
    page.get_by_role("tab", name="Lessons", exact=True).click()
    code = page.locator("#workshop-code input, #workshop-code textarea").first
    expect(code).not_to_have_value("", timeout=30_000)  # filled from the link
    page.locator("#workshop-name input, #workshop-name textarea").first.fill(name)
    page.locator("#workshop-join-button").click()
    expect(page.locator("#workshop-member")).to_contain_text(f"as {name}", timeout=30_000)
    expect(page.locator("#workshop-question")).to_contain_text("Is the text the same?", timeout=30_000)


def _choose(page: Page, choice: str) -> None:
    page.locator("#workshop-choice").get_by_label(choice, exact=True).check()  # multiple choice: one click
    page.locator("#workshop-check").click()


def _create_on_the_page(lecturer: Page) -> str:
    set_number(lecturer, "Repetition penalty", PINNED_PENALTY)
    lecturer.get_by_role("tab", name="Lessons", exact=True).click()
    lecturer.get_by_text("Run a class (lecturers)").click()
    lecturer.locator("#workshop-new-name input, #workshop-new-name textarea").first.fill("Browser class")
    lecturer.locator("#workshop-lessons").get_by_label(re.compile("decoder-only model writes")).first.check()
    for tab in ("chat", "finetune", "rag", "reasoning"):  # keep generate, inside and preferences
        lecturer.locator("#workshop-tabs").get_by_label(tab, exact=True).uncheck()
    lecturer.locator("#workshop-drive input").click()
    lecturer.get_by_role("option", name="class drive").click()
    lecturer.get_by_label("Pin the sidebar's adapter and sampling settings for the class").check()
    lecturer.locator("#workshop-create").click()
    created = lecturer.locator("#workshop-created")
    expect(created).to_contain_text("join code", timeout=30_000)
    return re.search(r"workshop=([A-Z0-9]+)", created.inner_text())[1]


@pytest.mark.heavy  # ~70 s: six browser contexts; the workshop's API and unit tests run in `make test`
def test_a_lecturer_runs_a_class_of_five(page: Page, open_page, app_url):
    drives.save("class drive", drives.DriveSettings(overlap=1, gold_rate=0.0))
    drives.add_items("class drive", two_response_items(3))
    lecturer = page
    lecturer.reload()  # the drive picker lists the drive made after the page opened (it also refills on focus)
    lecturer.get_by_role("tab", name="Generate").wait_for()
    code = _create_on_the_page(lecturer)
    made = workshops.get("Browser class")
    assert made.code == code and made.tabs == ["generate", "preferences", "inside"] and made.drive == "class drive"
    assert made.pinned["sampling"]["repetition_penalty"] == pytest.approx(1.3)
    expect(lecturer.locator("#workshop-done")).to_be_hidden()  # only a student marks steps done
    link = f"{app_url.rstrip('/')}{made.link}"
    with (
        open_page(link) as ada,
        open_page(link) as bob,
        open_page(link) as cy,
        open_page(link) as dee,
        open_page(link) as eve,
    ):
        students = dict(zip(STUDENTS, (ada, bob, cy, dee, eve), strict=True))
        for name, student in students.items():
            _join(student, name)
            expect(student.get_by_role("tab", name="Chat")).to_be_hidden()  # a tab the class does not use
            expect(student.get_by_role("tab", name="Inside the model")).to_be_visible()
        for name, student in students.items():  # four right, one wrong
            _choose(student, "no, it changes" if name == "Bob" else "yes, word for word")
        for name, student in students.items():
            verdict = "Not quite" if name == "Bob" else "Right"
            expect(student.locator("#workshop-verdict")).to_contain_text(verdict, timeout=30_000)
            student.locator("#workshop-done").click()
        assert "word for word" not in bob.locator("#workshop-verdict").inner_text(), "not revealed yet"

        # the sampling step, set up from the lesson: the class's pinned settings come back at every step
        set_number(ada, "Repetition penalty", "2")
        ada.get_by_role("tab", name="Lessons", exact=True).click()
        # self-attention, zero-shot, few-shot, then temperature and top-p (the lecture's order); one step at a
        # time, as a person reads them: clicks sent faster than a loaded CI machine answered were lost
        for step in range(2, 6):
            ada.get_by_role("button", name="Next ▶").click()
            expect(ada.locator("#lesson-step")).to_contain_text(f"Step {step} of", timeout=30_000)
        expect(ada.locator("#lesson-step")).to_contain_text("Temperature and top-p")
        ada.locator("#lesson-go").click()
        penalty = ada.get_by_label("number input for Repetition penalty", exact=True).first
        expect(penalty).to_have_value(PINNED_PENALTY, timeout=30_000)
        expect(ada.get_by_label("number input for Top-k", exact=True).first).to_have_value("8")  # the step's own
        ada.get_by_role("tab", name="Lessons", exact=True).click()
        ada.locator("#workshop-done").click()

        # the lecturer's tables refresh on their own (a timer), no reload
        table = lecturer.locator("#workshop-students")
        for name in STUDENTS:
            expect(table).to_contain_text(name, timeout=30_000)
        funnel = lecturer.locator("#workshop-funnel")
        expect(funnel).to_contain_text(re.compile(r"4 / 5"), timeout=30_000)  # step 1: checks right
        expect(lecturer.locator("#workshop-answers")).to_contain_text("no, it changes × 1", timeout=30_000)
        grid = lecturer.locator("#workshop-grid")  # students x steps
        expect(grid).to_contain_text("done ✓ right", timeout=30_000)
        expect(grid).to_contain_text("done ✗ wrong", timeout=30_000)

        lecturer.get_by_role("button", name="Export CSV").click()  # every student's every step
        expect(lecturer.get_by_text("Browser_class", exact=False).first).to_be_visible(timeout=30_000)

        # the lecturer reveals: Bob answers again and sees what was expected
        lecturer.locator("#workshop-reveal").get_by_role("checkbox").check()
        expect(lecturer.get_by_text("Students now see the expected answer")).to_be_visible(timeout=30_000)
        _choose(bob, "no, it changes")
        expect(bob.locator("#workshop-verdict")).to_contain_text("Expected: yes, word for word", timeout=30_000)

        # the class's label drive is chosen in the Label tab of a student who opens it
        dee.get_by_role("tab", name="Preferences").click()
        expect(dee.get_by_label(DRIVE_MODE)).to_be_checked(timeout=30_000)
        expect(dee.locator("#label-drive input")).to_have_value("class drive")

        # a reload keeps the student in the class, with its tabs
        cy.reload()
        cy.get_by_role("tab", name="Generate").wait_for()
        cy.get_by_role("tab", name="Lessons", exact=True).click()
        expect(cy.locator("#workshop-member")).to_contain_text("as Cy", timeout=30_000)
        expect(cy.get_by_role("tab", name="Chat")).to_be_hidden()
        assert "Bob" not in cy.content(), "students never see each other"
    report = workshops.status("Browser class")
    assert {p["name"]: p["checks_right"] for p in report["students"]} == {n: int(n != "Bob") for n in STUDENTS}
    assert {p["name"]: p["steps_done"] for p in report["students"]} == {n: 1 + (n == "Ada") for n in STUDENTS}
    assert [row["reached"] for row in report["funnel"][:2]] == [5, 1]
