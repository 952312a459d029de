"""What a person does in the browser, tab by tab, on the tiny model (its text is noise; the flows are real)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines.labels import preferences
from pipelines.store import jobs
from tests.browser_flows import ingest_document, open_advanced
from tests.helpers import write_sft_rows

pytestmark = pytest.mark.browser


def _textbox(page: Page, label: str):
    return page.get_by_label(label, exact=True).first


_RECORD_JS = """(selector) => {
  // every value the box shows, sampled at each frame the browser draws: a poll from the test process
  // (a round trip per read) can miss a short stream's intermediate states on a fast machine
  window.__seen = [];
  const tick = () => {
    const box = document.querySelector(selector);
    const value = box ? box.value : '';
    if (value && value !== window.__seen[window.__seen.length - 1]) window.__seen.push(value);
    window.__recorder = requestAnimationFrame(tick);
  };
  tick();
}"""


def _value_grows(page: Page, selector: str, start: Callable[[], None], timeout: float = 60) -> list[str]:
    """Every value of a textbox while it streams, from `start()` until it stops changing."""
    page.evaluate(_RECORD_JS, selector)
    start()
    deadline = time.time() + timeout
    stable, count = 0, 0
    while time.time() < deadline:
        now = page.evaluate("window.__seen.length")
        stable = stable + 1 if now and now == count else 0
        count = now
        if stable > 15:
            break
        time.sleep(0.05)
    return page.evaluate("cancelAnimationFrame(window.__recorder), window.__seen")


def test_generation_streams_and_shows_the_distribution(page: Page):
    _textbox(page, "Prompt").fill("Once upon a time")
    generate = page.get_by_role("button", name="Generate", exact=True)
    snapshots = _value_grows(page, "#gen-output textarea", generate.click)
    assert snapshots, "no completion appeared"
    assert len(snapshots) > 1, "the completion arrived in one piece instead of streaming"
    assert snapshots[-1].startswith(snapshots[0][:1])
    # the distribution chart: bars drawn for the next-token candidates
    expect(page.locator(".vega-embed").first).to_be_visible()
    expect(page.get_by_text("What is sampled with your settings")).to_be_visible()
    expect(page.locator("#gen-stats")).to_contain_text("tokens/s")
    expect(page.get_by_text(re.compile(r"the token actually sampled here was"))).to_be_visible()


def test_two_turn_chat(page: Page):
    page.get_by_role("tab", name="Chat").click()
    message = page.get_by_placeholder(re.compile("message", re.I)).first
    send = page.get_by_role("button", name="Send", exact=True)
    for turn in ("Hello there!", "And a second question?"):
        message.fill(turn)
        send.click()
        expect(page.get_by_text(turn, exact=True).first).to_be_visible()
        # Send is disabled in the response that shows the message, and enabled again only once the
        # reply is finished and the conversation is free: what a person waits for before typing on
        expect(send).to_be_enabled(timeout=60_000)
    bubbles = page.locator("#chat-conversation [data-testid='bot']")
    expect(bubbles).to_have_count(2, timeout=60_000)
    expect(page.locator("#chat-conversation [data-testid='user']")).to_have_count(2)


def test_preference_vote_and_reveal(page: Page):
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_label("Your name").fill("browser-tester")
    page.get_by_role("button", name="Next item (N)").click()
    item_box = page.locator("#pref-item-id textarea, #pref-item-id input").first
    expect(item_box).not_to_have_value("", timeout=60_000)
    item_id = item_box.input_value()
    vote = page.locator("#vote-a")
    expect(vote).to_be_enabled(timeout=60_000)
    vote.click()
    revealed = page.locator("#pref-revealed")
    expect(revealed).to_contain_text("You voted", timeout=30_000)
    expect(revealed).to_contain_text("temperature")
    labels = preferences.get_item(item_id).labels
    assert [(label.annotator, label.choice) for label in labels] == [("browser-tester", "A")]


def test_short_finetune_shows_progress_and_finishes(page: Page, job_runner, tmp_path):
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(write_sft_rows(tmp_path / "rows.jsonl", n=16)))
    expect(page.get_by_text(re.compile(r"16 rows"))).to_be_visible(timeout=30_000)
    page.get_by_label("Max steps").fill("3")
    open_advanced(page)
    page.get_by_label("Batch size").fill("4")
    page.get_by_label("Max length (tokens)").fill("64")
    page.get_by_label("Adapter name").fill("browser-adapter")
    page.get_by_role("button", name="Start fine-tuning").click()
    expect(page.get_by_text(re.compile(r"step \d+/3")).first).to_be_visible(timeout=120_000)  # live progress
    expect(page.get_by_text(re.compile(r"succeeded", re.I)).first).to_be_visible(timeout=240_000)
    done = [job for job in jobs.list_jobs() if job.name == "browser-adapter"]
    assert done and done[0].status == jobs.SUCCEEDED and done[0].step == 3


def test_document_ingested_and_cited_answer(page: Page, tmp_path):
    doc = tmp_path / "lighthouse.md"
    doc.write_text("# Keeper\n\nThe lighthouse keeper Ada polishes the great lens every evening at dusk.\n")
    ingest_document(page, "browserdocs", doc)
    page.get_by_label("Question", exact=True).fill("Who polishes the lens?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#rag-hits")).to_contain_text("lighthouse.md", timeout=120_000)
    # the passages the answer may cite, numbered as the prompt numbers them, with source and exact offsets
    passage = page.locator("#passage-1")
    expect(passage).to_contain_text("[1]")
    expect(passage).to_contain_text("lighthouse.md")
    expect(passage).to_contain_text("polishes the great lens")
    expect(page.locator("#rag-grounded")).not_to_be_empty(timeout=120_000)


def test_reasoning_comparison(page: Page):
    page.get_by_role("tab", name="Reasoning").click()
    page.get_by_label("Word problem").fill("Tom has 3 apples and buys 4 more. How many apples does he have?")
    page.get_by_role("button", name="Run", exact=True).click()
    for key in ("direct", "cot", "pal"):
        summary = page.locator(f"#reason-{key}-summary")
        expect(summary).to_contain_text(re.compile(r"answer", re.IGNORECASE), timeout=180_000)
        expect(summary).not_to_contain_text(
            "expected"
        )  # no known answer was typed, so nothing is marked right or wrong
        assert page.locator(f"#reason-{key} textarea").input_value()
