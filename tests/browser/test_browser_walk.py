"""What the issue-42 walk found, done again the way a person does it: errors, a failed send, the token tree's
distribution view, a reload mid-drive and the first screen of the Fine-tune and Dataset tabs at 1400 x 900."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines.labels import drives  # noqa: E402
from tests.browser_flows import DRIVE_MODE, next_item, pick_drive, set_number  # noqa: E402
from tests.helpers import two_response_items  # noqa: E402

pytestmark = pytest.mark.browser
ERROR_PILL = "[data-testid='status-tracker'] .error"


def _generate(page: Page, tokens: int) -> str:
    set_number(page, "Max new tokens", str(tokens))
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#gen-tokens .tok[data-index]")).to_have_count(tokens, timeout=60_000)
    return page.locator("#gen-output textarea").input_value()


def test_an_error_leaves_the_outputs_and_stays_until_dismissed(page: Page):
    """W5: every output of a failed event turned into a red "Error" pill hiding its content, with no reason;
    the reason was in a toast that faded after 10 s."""
    text = _generate(page, 4)
    assert text
    page.get_by_label("Prompt", exact=True).fill("")
    page.get_by_role("button", name="Generate", exact=True).click()
    toast = page.get_by_test_id("toast-body").filter(has_text="The prompt is empty")
    expect(toast).to_be_visible(timeout=30_000)
    expect(page.locator("#gen-output textarea")).to_have_value(text)  # what was there is still there
    expect(page.locator("#gen-output textarea")).to_be_visible()
    assert page.locator(ERROR_PILL).filter(visible=True).count() == 0
    time.sleep(12)
    expect(toast).to_be_visible()  # still there after the old 10 s
    assert page.get_by_test_id("toast-body").filter(has_text="The prompt is empty").count() == 1  # once, not "(2)"
    toast.get_by_role("button").first.click()
    expect(toast).to_have_count(0)


def test_a_failed_send_gives_the_message_back(page: Page):
    """W4: a send that failed (a bad stop string) left the message without a reply and emptied the box;
    resending made two user turns in a row."""
    # the page draws Generate's distribution once the model is in, with the shared sampling settings: a stop
    # string made too long before that draw shows the same message from it, which is not the send's
    expect(page.locator("#gen-inspect-summary")).to_contain_text("Right after the prompt", timeout=60_000)
    stops = page.get_by_label("Stop strings")
    stops.fill("x" * 201)  # one character over the limit
    page.get_by_role("tab", name="Chat").click()
    box = page.locator("#chat-message textarea")
    box.fill("What is a volcano?")
    box.press("Enter")
    expect(page.get_by_test_id("toast-body").filter(has_text="stop string")).to_be_visible(timeout=30_000)
    expect(box).to_have_value("What is a volcano?", timeout=30_000)  # back in the box
    expect(page.locator("#chat-conversation [data-testid='user']")).to_have_count(0)  # and out of the conversation
    stops.fill("")
    box.press("Enter")
    expect(page.locator("#chat-conversation [data-testid='bot']")).to_have_count(1, timeout=60_000)
    expect(page.locator("#chat-conversation [data-testid='user']")).to_have_count(1)  # one user turn, answered
    expect(page.get_by_text(re.compile(r"Written by .*1 .*\(base\)"))).to_be_visible(timeout=30_000)


def test_the_distribution_view_follows_the_token_tree(page: Page):
    """W1: after branching with typed text, moving the position to the forced token showed "Error: must be real
    number, not NoneType" in both charts; after a branch, the text still described the old one; a position typed
    into the box never refreshed the view."""
    _generate(page, 6)
    page.locator("#gen-tokens .tok[data-index]").nth(1).click()
    expect(page.locator("#tree-at input")).to_have_value("1", timeout=30_000)
    page.locator("#tree-typed textarea, #tree-typed input").first.fill(" Berlin")
    page.locator("#tree-grow").click()
    expect(page.locator("#gen-tokens .tok.forced").first).to_be_visible(timeout=60_000)
    summary = page.locator("#gen-inspect-summary")
    expect(summary).to_contain_text("After the prompt and 0 generated token", timeout=30_000)  # the new branch, at 0
    set_number(page, "Position in the generated text", "1")
    expect(summary).to_contain_text("was typed for this branch", timeout=30_000)  # a typed position refreshes it
    assert page.locator(ERROR_PILL).filter(visible=True).count() == 0
    assert page.get_by_test_id("toast-body").count() == 0


@pytest.fixture
def held_drive():
    drives.save("class", drives.DriveSettings(overlap=1, gold_rate=0.0))
    ids = two_response_items(2)
    drives.add_items("class", ids)
    return ids


def test_a_reload_mid_drive_comes_back_to_the_held_item(page: Page, held_drive):
    """W8: a reload lost the name, tab, mode and drive (five actions to resume); the end of a drive was a red
    Error toast."""
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_role("tab", name="Label", exact=True).click()
    page.get_by_label("Your name").fill("ann")
    page.get_by_label(DRIVE_MODE).check()
    pick_drive(page, "class")
    held = next_item(page)
    page.reload()
    page.get_by_role("tab", name="Generate").wait_for()
    item = page.locator("#pref-item-id textarea, #pref-item-id input").first
    expect(item).to_have_value(held, timeout=30_000)  # no action at all: the held item is on screen
    expect(page.get_by_label("Your name")).to_have_value("ann")
    expect(page.locator("#label-drive input")).to_have_value("class")
    page.locator("#vote-a").click()
    next_item(page)
    page.locator("#vote-b").click()
    expect(page.locator("#drive-progress")).to_contain_text("2 done of 2", timeout=30_000)
    page.get_by_role("button", name="Next item (N)").click()
    expect(page.get_by_test_id("toast-body").filter(has_text="Thank you")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile("Done: nothing left for you in class"))).to_be_visible()
    assert page.get_by_test_id("toast-body").filter(has_text="Error").count() == 0


def test_a_first_visit_offers_the_lessons_and_the_common_paths_fit_one_screen(page: Page):
    """The app opened on Generate with Lessons the 8th tab; Fine-tune was 4,600 px tall and Dataset nearly so."""
    assert page.viewport_size == {"width": 1400, "height": 1100}
    page.set_viewport_size({"width": 1400, "height": 900})
    expect(page.locator("#welcome")).to_be_visible(timeout=30_000)
    page.locator("#welcome-explore").click()
    expect(page.locator("#welcome")).to_be_hidden()
    page.get_by_role("tab", name="Fine-tune").click()
    start = page.get_by_role("button", name="Start fine-tuning").bounding_box()
    assert start is not None and start["y"] + start["height"] <= 900, start  # data, method, name and Start
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_role("tab", name="Dataset").click()
    assert page.evaluate("() => document.body.scrollHeight") < 1400
    page.reload()
    page.get_by_role("tab", name="Generate").wait_for()
    expect(page.locator("#welcome")).to_be_hidden()  # dismissed once, for this browser
    # the restore answers at once, but a reload on a 2-core machine busy with the suite takes its time
    dataset = page.get_by_role("tab", name="Dataset", exact=True)
    expect(dataset).to_have_attribute("aria-selected", "true", timeout=30_000)


def test_a_sampling_preset_is_saved_loaded_and_kept_across_a_reload(page: Page):
    """Users of Open WebUI and text-generation-webui expect saved presets of their settings (issue 42)."""
    set_number(page, "Temperature", "1.3")
    page.get_by_text("My presets (saved in this browser)").click()
    page.get_by_label("Save the settings above as").fill("warm")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved warm")).to_be_visible(timeout=30_000)
    set_number(page, "Temperature", "0.2")
    page.reload()
    page.get_by_role("tab", name="Generate").wait_for()
    page.get_by_text("My presets (saved in this browser)").click()
    page.locator("#preset-pick input").click()
    page.get_by_role("option", name="warm").click()
    page.get_by_role("button", name="Load", exact=True).click()
    expect(page.get_by_label("number input for Temperature", exact=True).first).to_have_value("1.3", timeout=30_000)


def test_a_restore_that_arrives_late_never_moves_a_person_off_the_tab_they_picked(page: Page):
    """CI's browser run: after a reload the test picked Fine-tune, then the page's restore of the tab it had
    left (Chat) arrived and moved it there. Here the answers the page waits on directly (the restore among
    them) are held until a tab has been picked, and the tab picked stays."""
    page.get_by_role("tab", name="Chat").click()
    expect(page.get_by_role("tab", name="Chat", exact=True)).to_have_attribute("aria-selected", "true")
    page.wait_for_timeout(500)  # the tab is remembered
    direct = re.compile(r".*/run/predict.*")
    held: list = []
    released: list = []
    page.route(direct, lambda route: route.continue_() if released else held.append(route))
    page.reload()
    page.get_by_role("tab", name="Generate").wait_for()
    deadline = time.time() + 30
    while not held and time.time() < deadline:
        page.wait_for_timeout(100)
    assert held, "the restore never asked"
    kept_tab = "() => localStorage.getItem('llm-playground-tab')"  # remembered.keep's storage for the tab
    before = page.evaluate(kept_tab)
    page.get_by_role("tab", name="Fine-tune").click()
    released.append(True)
    for route in held:
        route.continue_()
    page.wait_for_timeout(2000)  # the restore has answered and the page has done what it says
    expect(page.get_by_role("tab", name="Fine-tune", exact=True)).to_have_attribute("aria-selected", "true")
    # the browser writes the tab to its storage after the page has drawn the ~20 answers released at once: on a
    # busy 2-core machine that took over 2 s, and a reload before it came back to the tab written before. The
    # storage is encrypted with a fresh salt on every write, so "changed" may be a rewrite of the old tab:
    # the walk waits until the storage has changed and then stayed the same for 2 s
    page.wait_for_function(f"(before) => ({kept_tab})() !== before", arg=before, timeout=30_000)
    settled, last = time.time(), page.evaluate(kept_tab)
    while time.time() - settled < 2:
        page.wait_for_timeout(250)
        now = page.evaluate(kept_tab)
        if now != last:
            settled, last = time.time(), now
    page.reload()  # with nobody clicking, the page comes back where it was left: Fine-tune
    # the restore is answered once the reloaded page has mounted; a busy 2-core machine took over 15 s (CI)
    expect(page.get_by_role("tab", name="Fine-tune", exact=True)).to_have_attribute(
        "aria-selected", "true", timeout=30_000
    )
