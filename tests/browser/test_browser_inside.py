"""Inside the model and the token tree in the browser: panels render on the tiny model; a clicked
token becomes a branch that can be navigated."""

from __future__ import annotations

import re

import pytest

pytest.importorskip(
    "playwright", reason="browser tests need the playwright package: run `make test` (requirements-dev.txt)"
)
from playwright.sync_api import Page, expect  # noqa: E402

pytestmark = pytest.mark.browser


def test_inside_tab_draws_tokens_heatmap_lens_and_card(page: Page):
    page.get_by_role("tab", name="Inside the model").click()
    page.get_by_role("button", name="Tokenize").click()
    expect(page.locator("#inside-tokens .tok").first).to_be_visible(timeout=30_000)
    page.get_by_role("tab", name="Likelihood").click()
    page.get_by_role("button", name="Score the text").click()
    expect(page.locator("#inside-surprisal .surp").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"perplexity \d"))).to_be_visible()
    page.get_by_role("tab", name="Attention").click()
    page.get_by_role("button", name="Show attention").click()
    heatmap = page.locator("#inside-attention table.heatmap")
    expect(heatmap).to_be_visible(timeout=30_000)
    rows = heatmap.locator("tr").count() - 1
    assert rows > 3 and heatmap.locator("td.masked").count() == rows * (rows - 1) // 2
    page.get_by_role("tab", name="Logit lens").click()
    page.get_by_role("button", name="Run the lens").click()
    expect(page.locator("#inside-lens td.lens").first).to_be_visible(timeout=30_000)
    assert page.locator("#inside-lens tr").count() == 1 + 2  # the header and the tiny model's two layers
    page.get_by_role("tab", name="Architecture").click()
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.locator("#inside-kv")).to_contain_text("bytes per token", timeout=30_000)


def test_heads_patching_and_steering_answer_clicks(page: Page):
    """Issue 40: a head's cell opens its pattern; a patching cell its distribution; a mistake says why and the
    grid stays; steering at strength 0 writes the same text twice."""
    page.get_by_role("tab", name="Inside the model").click()
    page.get_by_role("tab", name="Heads").click()
    page.get_by_role("button", name="Scan the heads").click()
    expect(page.locator("#heads-note")).to_contain_text("8 heads (2 layers × 4)", timeout=30_000)
    page.locator("#heads-grid [role=gridcell]").nth(5 + 3).click()  # row L1, column H2
    expect(page.get_by_text("Layer 1, head 2 on your prompt")).to_be_visible(timeout=30_000)
    expect(page.locator("#heads-pattern table.heatmap")).to_be_visible()
    page.get_by_role("tab", name="Patching").click()
    page.get_by_role("button", name="Patch every layer and position").click()
    expect(page.locator("#patch-note")).to_contain_text("Metric: logit(", timeout=30_000)
    page.locator("#patch-grid [role=gridcell]").nth(10 + 9).click()  # row L1, the last position
    expect(page.locator("#patch-cell")).to_contain_text("Layer 1, position 8", timeout=30_000)
    page.get_by_label("Corrupted prompt (same number of tokens)").fill("Rome")
    page.get_by_role("button", name="Patch every layer and position").click()
    expect(page.get_by_test_id("toast-body").filter(has_text="same length")).to_be_visible(timeout=30_000)
    expect(page.locator("#patch-cell")).to_contain_text("Layer 1, position 8")  # what was shown stays
    page.get_by_role("tab", name="Steering").click()
    strength = page.get_by_label("number input for Strength", exact=True)
    strength.fill("0")
    strength.press("Enter")
    page.get_by_role("button", name="Steer", exact=True).click()
    expect(page.locator("#steer-note")).to_contain_text("Vector at layer", timeout=60_000)
    assert page.locator("#steer-steered").inner_text() == page.locator("#steer-unsteered").inner_text()


def test_click_a_token_branch_and_navigate(page: Page):
    box = page.get_by_label("number input for Max new tokens", exact=True).first
    box.fill("8")
    box.press("Enter")
    expect(box).to_have_value("8")
    page.get_by_role("button", name="Generate", exact=True).click()
    tokens = page.locator("#gen-tokens .tok[data-index]")
    expect(tokens).to_have_count(8, timeout=60_000)
    original = page.locator("#gen-output textarea").input_value()
    tokens.nth(2).click()
    expect(page.locator("#tree-at input")).to_have_value("2", timeout=30_000)
    page.locator("#tree-grow").click()
    tree = page.locator("#token-tree")
    expect(tree).to_contain_text("from #0 at token 2", timeout=60_000)
    expect(page.locator("#gen-tokens .tok.forced")).to_have_count(1, timeout=30_000)
    branched = page.locator("#gen-output textarea").input_value()
    assert branched != original
    page.locator("#tree-branch input").click()
    page.get_by_role("option", name=re.compile(r"#0 original")).click()
    expect(page.locator("#gen-output textarea")).to_have_value(original, timeout=30_000)
    expect(page.locator("#gen-tokens .tok.forced")).to_have_count(0)
