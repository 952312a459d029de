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
