"""Nothing a person did is lost on reload (issue 43): Generate's output with its token views, Chat's
conversation, a RAG answer and a Reasoning run come back after a reload, an earlier one reopens from the
tab's history, "Clear history" forgets them -- and another visitor's browser sees none of it."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from tests.browser_flows import set_number  # noqa: E402

pytestmark = pytest.mark.browser


def _reload(page: Page) -> None:
    page.reload()
    page.get_by_role("tab", name="Generate").wait_for()


def _kept(page: Page, key: str) -> None:
    """Wait until the tab's history holds the newest result (it is written as the result finishes)."""
    expect(page.locator(f"#{key}-history-pick input")).not_to_have_value("", timeout=60_000)


def _generate(page: Page, prompt: str, tokens: int) -> str:
    before = page.locator("#gen-output textarea").input_value()
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#gen-output textarea")).not_to_have_value(before, timeout=60_000)
    expect(page.locator("#gen-tokens .tok[data-index]")).to_have_count(tokens, timeout=60_000)
    return page.locator("#gen-output textarea").input_value()


def test_generate_comes_back_after_a_reload_reopens_from_history_and_clears(page: Page, open_page, app_url):
    set_number(page, "Max new tokens", "4")
    set_number(page, "Temperature", "0")
    first = _generate(page, "Once upon a time", 4)
    _kept(page, "generate")
    second = _generate(page, "The weather today", 4)
    expect(page.locator("#generate-history-pick input")).to_have_value(re.compile("The weather today"), timeout=60_000)
    _reload(page)
    expect(page.locator("#gen-output textarea")).to_have_value(second, timeout=30_000)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("The weather today")
    expect(page.locator("#gen-tokens .tok[data-index]")).to_have_count(4, timeout=30_000)  # the token view too

    page.locator("#generate-history-pick input").click()
    options = page.get_by_role("option")
    expect(options).to_have_count(2)
    page.get_by_role("option", name="Once upon a time").click()
    expect(page.locator("#gen-output textarea")).to_have_value(first, timeout=30_000)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("Once upon a time")

    with open_page(app_url) as other:  # another visitor: nothing of this one's
        other.wait_for_timeout(2_000)
        expect(other.locator("#gen-output textarea")).to_have_value("")
        other.locator("#generate-history-pick input").click()
        expect(other.get_by_role("option")).to_have_count(0)

    page.get_by_role("button", name="Clear history").first.click()
    expect(page.locator("#generate-history-pick input")).to_have_value("", timeout=30_000)
    page.wait_for_timeout(500)
    _reload(page)
    page.wait_for_timeout(2_000)
    expect(page.locator("#gen-output textarea")).to_have_value("")


def test_a_conversation_comes_back_after_a_reload(page: Page):
    set_number(page, "Max new tokens", "4")
    page.get_by_role("tab", name="Chat").click()
    system = page.get_by_label("System prompt")
    expect(system).to_be_editable(timeout=60_000)
    system.fill("Answer in one word.")
    box = page.locator("#chat-message textarea")
    box.fill("Hello there")
    box.press("Enter")
    expect(page.locator("#chat-conversation [data-testid='bot']")).to_have_count(1, timeout=60_000)
    _kept(page, "chat")
    box.fill("And again")
    box.press("Enter")
    expect(page.locator("#chat-conversation [data-testid='bot']")).to_have_count(2, timeout=60_000)
    page.wait_for_timeout(1_000)
    _reload(page)
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-conversation [data-testid='user']")).to_have_count(2, timeout=30_000)
    expect(page.locator("#chat-conversation [data-testid='user']").first).to_contain_text("Hello there")
    expect(page.get_by_label("System prompt")).to_have_value("Answer in one word.", timeout=30_000)
    page.locator("#chat-history-pick input").click()
    expect(page.get_by_role("option")).to_have_count(1)  # one conversation, not one entry per turn


def test_a_rag_answer_and_a_reasoning_run_come_back_after_a_reload(page: Page, tmp_path):
    from pipelines.rag import store

    notes = tmp_path / "harbour.md"
    notes.write_text("# Harbour\n\nThe Corran lighthouse was repainted red in 1987 by volunteers.\n")
    store.create("kept-docs", chunk_size=64, overlap=8)
    store.ingest("kept-docs", [(str(notes), "harbour.md")])
    _reload(page)  # the collection, made after the page opened, is offered (and picked: the only one)
    set_number(page, "Max new tokens", "4")
    page.get_by_role("tab", name="RAG").click()
    page.get_by_label("Question").fill("When was the lighthouse repainted?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#rag-hits")).to_contain_text("harbour.md", timeout=60_000)
    _kept(page, "rag")

    page.get_by_role("tab", name="Reasoning").click()
    page.get_by_label("Word problem").fill("What is 2 plus 3?")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#reason-direct-summary")).not_to_be_empty(timeout=60_000)
    _kept(page, "reasoning")
    direct = page.locator("#reason-direct textarea").input_value()
    page.wait_for_timeout(500)

    _reload(page)
    page.get_by_role("tab", name="RAG").click()
    expect(page.get_by_label("Question")).to_have_value("When was the lighthouse repainted?", timeout=30_000)
    expect(page.locator("#rag-hits")).to_contain_text("harbour.md", timeout=30_000)
    page.get_by_role("tab", name="Reasoning").click()
    expect(page.get_by_label("Word problem")).to_have_value("What is 2 plus 3?", timeout=30_000)
    expect(page.locator("#reason-direct textarea")).to_have_value(direct, timeout=30_000)


def test_a_generation_saved_as_a_capsule_loads_back_every_setting_and_generates_the_same_text(page: Page, tmp_path):
    set_number(page, "Max new tokens", "5")
    set_number(page, "Temperature", "1.1")
    set_number(page, "Top-k", "50")
    text = _generate(page, "A capsule keeps", 5)
    page.get_by_text("Replay capsule: save this result, or load one").filter(visible=True).first.click()
    page.locator("#capsule-save").click()
    link = page.locator("a[href*='generate-capsule.json']").first
    expect(link).to_be_visible(timeout=30_000)
    saved = tmp_path / "capsule.json"
    saved.write_bytes(page.request.get(link.get_attribute("href")).body())
    assert json.loads(saved.read_text())["kind"] == "generate"
    set_number(page, "Temperature", "0.3")
    set_number(page, "Top-k", "0")
    page.get_by_label("Prompt", exact=True).fill("something else")
    with page.expect_file_chooser() as chooser:
        page.locator("#capsule-load").click()
    chooser.value.set_files(str(saved))
    expect(page.locator("#capsule-note")).to_contain_text("press Generate to make it again", timeout=30_000)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("A capsule keeps")
    expect(page.get_by_label("number input for Temperature", exact=True).first).to_have_value("1.1")
    expect(page.get_by_label("number input for Top-k", exact=True).first).to_have_value("50")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#gen-output textarea")).to_have_value(text, timeout=60_000)  # the same seed, the same text


def test_the_inside_panels_keep_their_typed_prompts_across_a_reload(page: Page, open_page, app_url):
    page.get_by_role("tab", name="Inside the model").click()
    page.get_by_label("Text", exact=True).fill("My own sentence to tokenize.")
    page.get_by_role("tab", name="Patching").click()
    page.get_by_label("Clean prompt").fill("The Louvre is in the city of")
    page.get_by_label("Clean prompt").blur()
    page.wait_for_timeout(1_000)
    _reload(page)
    page.get_by_role("tab", name="Inside the model").click()
    expect(page.get_by_label("Text", exact=True)).to_have_value("My own sentence to tokenize.", timeout=30_000)
    page.get_by_role("tab", name="Patching").click()
    expect(page.get_by_label("Clean prompt")).to_have_value("The Louvre is in the city of")
    with open_page(app_url) as other:  # another browser starts from the defaults
        other.get_by_role("tab", name="Inside the model").click()
        expect(other.get_by_label("Text", exact=True)).to_have_value(
            "LLMs are cool, and unfriendly tokens split into pieces."
        )


def _capsule_round_trip(page: Page, prefix: str, kind: str, folder, change) -> None:
    """Save the tab's capsule, `change` its settings, load the capsule back: the note says what to press."""
    page.get_by_text("Replay capsule: save this result, or load one").filter(visible=True).click()
    page.locator(f"#{prefix}-save").click()
    link = page.locator(f"a[href*='{kind}-capsule.json']").filter(visible=True).first
    expect(link).to_be_visible(timeout=30_000)
    saved = folder / f"{kind}.json"
    saved.write_bytes(page.request.get(link.get_attribute("href")).body())
    assert json.loads(saved.read_text())["kind"] == kind
    change()
    with page.expect_file_chooser() as chooser:
        page.locator(f"#{prefix}-load").click()
    chooser.value.set_files(str(saved))
    expect(page.locator(f"#{prefix}-note")).to_contain_text("to make it again", timeout=30_000)


def test_a_chat_reply_a_rag_answer_and_a_reasoning_run_load_back_from_capsules_and_come_out_the_same(
    page: Page, tmp_path
):
    """Issue 43: each tab's result saved as a capsule (sampled, with the seed it was given) loads back its
    settings, and pressing the tab's button makes the same result again."""
    from pipelines.rag import store

    notes = tmp_path / "harbour.md"
    notes.write_text("# Harbour\n\nThe Corran lighthouse was repainted red in 1987 by volunteers.\n")
    store.create("capsule-docs", chunk_size=64, overlap=8)
    store.ingest("capsule-docs", [(str(notes), "harbour.md")])
    _reload(page)
    set_number(page, "Max new tokens", "4")
    set_number(page, "Temperature", "1.3")  # sampled, seed -1: the seed each run was given is in its capsule

    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-message textarea").fill("Tell me about the sea")
    page.locator("#chat-message textarea").press("Enter")
    bot = page.locator("#chat-conversation [data-testid='bot']")
    expect(bot).to_have_count(1, timeout=60_000)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled(timeout=60_000)
    reply = bot.first.inner_text()

    def clear_chat() -> None:
        page.get_by_role("button", name="🗑 Clear").click()
        expect(bot).to_have_count(0)

    _capsule_round_trip(page, "chat-capsule", "chat", tmp_path, clear_chat)
    expect(page.locator("#chat-conversation [data-testid='user']")).to_have_count(1)  # the message answered
    page.get_by_role("button", name="↻ Regenerate").click()
    expect(bot).to_have_count(1, timeout=60_000)
    expect(bot.first).to_have_text(reply, timeout=60_000)

    page.get_by_role("tab", name="RAG").click()
    page.get_by_label("Question").fill("When was the lighthouse repainted?")
    page.get_by_role("button", name="Ask", exact=True).click()
    grounded = page.locator("#rag-grounded")
    expect(page.locator("#rag-hits")).to_contain_text("harbour.md", timeout=60_000)
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled(timeout=60_000)
    page.wait_for_timeout(500)
    answer = grounded.inner_text()
    _capsule_round_trip(
        page, "rag-capsule", "rag", tmp_path, lambda: page.get_by_label("Question").fill("something else")
    )
    expect(page.get_by_label("Question")).to_have_value("When was the lighthouse repainted?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(grounded).to_contain_text(answer.splitlines()[0].strip(), timeout=60_000)  # the model's words

    page.get_by_role("tab", name="Reasoning").click()
    page.get_by_label("Word problem").fill("What is 2 plus 3?")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#reason-direct-summary")).not_to_be_empty(timeout=60_000)
    expect(page.get_by_role("button", name="Run", exact=True)).to_be_enabled(timeout=60_000)
    _kept(page, "reasoning")
    outputs = [page.locator(f"#reason-{key} textarea").input_value() for key in ("direct", "cot", "pal")]
    _capsule_round_trip(
        page, "reason-capsule", "reasoning", tmp_path, lambda: page.get_by_label("Word problem").fill("2 + 2?")
    )
    expect(page.get_by_label("Word problem")).to_have_value("What is 2 plus 3?")
    page.get_by_role("button", name="Run", exact=True).click()
    for key, text in zip(("direct", "cot", "pal"), outputs, strict=True):
        expect(page.locator(f"#reason-{key} textarea")).to_have_value(text, timeout=60_000)


@pytest.fixture
def signed_in_url(use_tiny, monkeypatch):
    """The app behind its own sign-in (PLAYGROUND_AUTH), on a database of this test's."""
    from pipelines import access
    from pipelines.store import db
    from tests.helpers import launched_app

    monkeypatch.setenv("PLAYGROUND_AUTH", "alice:alice-pw,bob:bob-pw")
    access.reset_policy()
    with launched_app(use_tiny) as url:
        yield url
    db.dispose_all()


def _signed_in(browser, url: str, user: str):
    """A new device (browser context) on which `user` signs in."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(f"{user}-pw")
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Generate").wait_for()
    return context, page


def test_a_signed_in_persons_work_follows_them_to_another_device_and_no_one_else(browser, signed_in_url):
    """Issue 43: signed-in people keep their history on the server across devices; a browser shared by two
    people shows each only their own."""
    laptop_context, laptop = _signed_in(browser, signed_in_url, "alice")
    set_number(laptop, "Max new tokens", "4")
    set_number(laptop, "Temperature", "0")
    text = _generate(laptop, "On the laptop", 4)
    _kept(laptop, "generate")
    laptop_context.close()

    phone_context, phone = _signed_in(browser, signed_in_url, "alice")
    expect(phone.locator("#gen-output textarea")).to_have_value(text, timeout=30_000)  # from the server
    expect(phone.locator("#generate-history-pick input")).to_have_value(re.compile("On the laptop"))
    phone.goto(signed_in_url.rstrip("/") + "/logout")  # the phone passed to bob: alice's work stays in its storage
    phone.get_by_label("username").fill("bob")
    phone.get_by_label("password").fill("bob-pw")
    phone.get_by_role("button", name="Login").click()
    phone.get_by_role("tab", name="Generate").wait_for()
    phone.wait_for_timeout(2_000)  # the page's restore has answered
    expect(phone.locator("#gen-output textarea")).to_have_value("")
    expect(phone.locator("#generate-history-pick input")).to_have_value("")
    phone_context.close()
