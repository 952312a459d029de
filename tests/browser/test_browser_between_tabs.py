"""Flows that cross tabs, reloads and mistakes: where most defects were found (tiny model; its text is noise).

- train an adapter, use it in Chat, reload, train again;
- an error in the middle of a reply, then Send again;
- reload during and after each creation (a job, an adapter, a collection), and pickers that see it.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

from pipelines.store import jobs
from tests.browser_flows import ingest_document, open_advanced
from tests.helpers import make_lora_adapter, write_sft_rows

pytestmark = pytest.mark.browser
BASE_LAYERS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _toasts(page: Page):
    return page.get_by_test_id("toast-body")


def _pick(page: Page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=option).click()
    expect(page.locator(f"#{dropdown_id} input")).to_have_value(option)


def _options(page: Page, dropdown_id: str) -> list[str]:
    page.locator(f"#{dropdown_id} input").click()  # opening a picker refills it
    page.wait_for_timeout(500)
    names = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return [name.replace("✓", "").strip() for name in names]  # the selected one is ticked


def _target_layers(page: Page) -> list[str]:
    return [label.strip() for label in page.locator("#ft-targets label").all_inner_texts()]


def _start_finetune(page: Page, rows, name: str) -> None:
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(rows))
    expect(page.get_by_text(re.compile(r"16 rows"))).to_be_visible(timeout=30_000)
    page.get_by_label("Max steps").fill("2")
    open_advanced(page)
    page.get_by_label("Batch size").fill("4")
    page.get_by_label("Max length (tokens)").fill("64")
    page.get_by_label("number input for Answers compared").fill("1")
    page.get_by_label("Adapter name").fill(name)
    page.get_by_role("button", name="Start fine-tuning").click()


def _wait_for_job(name: str) -> jobs.JobInfo:
    import time

    deadline = time.time() + 300
    while time.time() < deadline:
        found = [job for job in jobs.list_jobs() if job.name == name]
        if found and found[0].done:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"job {name} did not finish")


@pytest.mark.heavy  # ~85 s: two fine-tuning jobs through the page; `make test` keeps the short fine-tune walk
def test_train_use_the_adapter_in_chat_reload_and_train_again(own_page: Page, job_runner, tmp_path):
    page = own_page
    rows = write_sft_rows(tmp_path / "rows.jsonl", n=16)
    card = page.locator("#model-card")
    expect(card).to_contain_text("parameters", timeout=60_000)
    card_before = card.inner_text()
    page.get_by_role("tab", name="Fine-tune").click()
    open_advanced(page)
    expect(page.locator("#ft-targets input").first).to_be_enabled(timeout=60_000)
    assert _target_layers(page) == BASE_LAYERS

    _start_finetune(page, rows, "first-tutor")
    # reload while it runs: the job is found again, with its phases
    expect(page.get_by_text(re.compile(r"Train · step \d/2|Evaluate")).first).to_be_visible(timeout=120_000)
    page.reload()
    page.get_by_role("tab", name="Fine-tune").click()
    expect(page.get_by_text(re.compile(r"first-tutor — finetune")).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"Prepare: data, base model")).first).to_be_visible(timeout=60_000)
    assert _wait_for_job("first-tutor").status == jobs.SUCCEEDED
    expect(page.get_by_text(re.compile(r"Evaluate: base model vs tuned")).first).to_be_visible(timeout=60_000)

    # use it in Chat
    _pick(page, "sidebar-adapter", "first-tutor (lora)")
    page.get_by_role("tab", name="Chat").click()
    page.get_by_placeholder(re.compile("message", re.I)).first.fill("Hello there!")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#chat-conversation [data-testid='bot']")).to_have_count(1, timeout=60_000)

    # reload: nothing derived from the base model changed because an adapter was used
    page.reload()
    page.get_by_role("tab", name="Fine-tune").click()
    expect(card).to_contain_text("parameters", timeout=60_000)
    open_advanced(page)
    expect(page.locator("#ft-targets input").first).to_be_enabled()
    page.wait_for_timeout(1500)  # every page-load event has answered
    assert card.inner_text() == card_before
    assert _target_layers(page) == BASE_LAYERS
    assert _toasts(page).count() == 0, _toasts(page).all_inner_texts()
    page.get_by_text("Adapters: merge into the base model, or download").click()
    assert "first-tutor (lora)" in _options(page, "ft-adapter-pick")

    _start_finetune(page, rows, "second-tutor")
    assert _wait_for_job("second-tutor").status == jobs.SUCCEEDED, jobs.tail_log(_wait_for_job("second-tutor").id)
    # the "queued" notice may still be up when a fast run ends (it stays 10 s); nothing else may be
    problems = [text for text in _toasts(page).all_inner_texts() if not text.startswith("Info")]
    assert not problems, problems


def test_chat_is_free_again_after_every_error(page: Page):
    page.get_by_role("tab", name="Chat").click()
    message = page.get_by_placeholder(re.compile("message", re.I)).first
    send = page.get_by_role("button", name="Send", exact=True)
    regenerate = page.get_by_role("button", name="↻ Regenerate")

    send.click()  # nothing typed: a message on the page, not a silent HTTP 500
    expect(_toasts(page).filter(has_text="Type a message first")).to_be_visible()

    regenerate.click()  # nothing to regenerate: the reply fails before it starts
    expect(_toasts(page).filter(has_text="no user message")).to_be_visible()
    expect(send).to_be_enabled()
    expect(regenerate).to_be_enabled()

    stop = page.get_by_label("Stop strings").first  # the sidebar's (Compare has a "B · " one)
    stop.fill("\\x1")  # a broken escape: the reply fails on its settings, after the message was taken
    message.fill("First try")
    send.click()
    expect(_toasts(page).filter(has_text="Stop strings: bad escape")).to_be_visible()
    expect(send).to_be_enabled()
    expect(regenerate).to_be_enabled()

    stop.fill("")
    message.fill("Second try")
    send.click()
    expect(page.locator("#chat-conversation [data-testid='bot']")).to_have_count(1, timeout=60_000)
    expect(send).to_be_enabled(timeout=60_000)


def test_stop_leaves_no_generating_status(page: Page):
    page.get_by_label("Prompt", exact=True).first.fill("Once upon a time")
    page.get_by_label("number input for Max new tokens").first.fill("1024")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#gen-stats")).to_contain_text("tokens/s", timeout=60_000)
    page.locator("#gen-stop").click()
    expect(page.locator("#gen-stats")).not_to_contain_text("generating", timeout=10_000)
    expect(page.locator("#gen-stats")).to_contain_text(re.compile(r"stopped by you|finished"))


def test_pickers_know_what_was_created_since_start(page: Page, tokenizer, data_dir, tmp_path):
    doc = tmp_path / "bees.md"
    doc.write_text("# Bees\n\nWorker bees in the Linden hive dance to show where the clover field is.\n")
    ingest_document(page, "beenotes", doc)

    make_lora_adapter(tokenizer, data_dir / "adapters", "made-after-start")
    assert "made-after-start (lora)" in _options(page, "sidebar-adapter")  # opening the picker is enough

    page.reload()
    page.get_by_role("tab", name="RAG").click()
    expect(page.locator("#rag-collection input")).to_have_value("beenotes")
    page.get_by_label("Question", exact=True).fill("Why do the bees dance?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#rag-hits")).to_contain_text("bees.md", timeout=120_000)
    assert _toasts(page).count() == 0, _toasts(page).all_inner_texts()
    page.get_by_role("tab", name="Fine-tune").click()
    page.get_by_text("Adapters: merge into the base model, or download").click()
    assert "made-after-start (lora)" in _options(page, "ft-adapter-pick")


@pytest.mark.heavy  # ~42 s: a classifier trained through the page
def test_lesson_sets_up_a_classifier_that_trains_and_classifies(page: Page, job_runner):
    """Lessons -> the feature-based step opens the classification panel filled in; train; pick; classify."""
    page.get_by_role("tab", name="Lessons").click()
    page.locator("#lesson-pick input").click()
    page.get_by_role("option", name=re.compile("Finetuning LLMs")).click()
    for step in (2, 3):  # GPT's and BERT's pre-training come first, in the lecture's order; one click at a time
        page.get_by_role("button", name="Next ▶").click()
        expect(page.locator("#lesson-step")).to_contain_text(f"Step {step} of", timeout=30_000)
    expect(page.locator("#lesson-step")).to_contain_text("Feature-based")
    page.locator("#lesson-go").click()
    box = page.locator("#cls-box")
    expect(box.get_by_label("Classifier name")).to_have_value("sentiment-head")  # the panel opened, filled in
    expect(box.get_by_label("Feature-based: the head only (the model frozen)")).to_be_checked()
    box.get_by_label("Max steps").fill("2")
    page.locator("#cls-start").click()
    job = _wait_for_job("sentiment-head")
    assert job.status == jobs.SUCCEEDED and job.kind == "classify", jobs.tail_log(job.id)
    box.get_by_role("button", name="Refresh").click()
    expect(page.locator("#cls-table")).to_contain_text("sentiment-head")
    _pick(page, "cls-pick", "sentiment-head (head)")
    expect(page.locator("#cls-describe")).to_contain_text("true ↓ / predicted →")  # its confusion matrix
    page.locator("#cls-go").click()
    expect(page.locator("#cls-result")).to_contain_text(re.compile(r"positive|negative"), timeout=30_000)
    assert not _toasts(page).filter(has_text=re.compile("Error")).count()
