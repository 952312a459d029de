"""The compression lab on the real bundled model: the GGUF arithmetic reproduces the shipped file,
and the figures the panel's explanation rests on hold."""

from __future__ import annotations

import pytest

from pipelines.engine.model_source import bundled_gguf_path
from pipelines.inside import compression

pytestmark = pytest.mark.integration


def test_the_bundled_q4_1_file_is_reproduced_and_the_lessons_claims_hold(real_handle):
    spec = compression.CompressSpec(variants=["int8_weights", "int8_dynamic", "q4_1", "q4_0"], new_tokens=4)
    rows = {row["name"]: row for row in compression.compress(real_handle, spec)["variants"]}
    shipped = bundled_gguf_path()
    # the size model (GGUF blocks + the file's metadata) gives the shipped file to the byte
    assert round(rows["q4_1"]["size_mb"] * 1e6) == shipped.stat().st_size
    # fp32 here *is* the shipped 4-bit weights widened: rounding them to Q4_1 again changes nothing
    assert rows["q4_1"]["perplexity"] == pytest.approx(rows["fp32"]["perplexity"], rel=1e-3)
    assert rows["q4_1"]["greedy_agreement"] > 0.99
    # a symmetric 4-bit rounding costs; 8-bit weights barely do; 8-bit activations do (outliers)
    assert rows["q4_0"]["perplexity"] > rows["fp32"]["perplexity"] * 1.05
    assert rows["int8_weights"]["perplexity"] < rows["fp32"]["perplexity"] * 1.03
    assert rows["int8_dynamic"]["perplexity"] > rows["int8_weights"]["perplexity"] * 1.5
    assert rows["int8_dynamic"]["greedy_agreement"] < rows["int8_weights"]["greedy_agreement"]
