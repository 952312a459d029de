"""The Inside-the-model tab's panels on the tiny model, and the `inspect` command's JSON contract."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from playground import inside as tab
from tests.refusals import REFUSED


def test_panels_draw_what_the_engine_computes(use_tiny):
    tokens, summary = tab.tokenize("unfriendly LLMs", False)
    assert tokens.count("class='tok ") >= 3 and "characters →" in summary.replace("**", "")
    # issue 42: the leading space shows as ␣, as in every other view of the app, not as the tokenizer's Ġ
    assert "␣LL" in tokens and "Ġ" not in tokens
    with pytest.raises(REFUSED, match="tokens; these views take at most 4096"):
        tab.tokenize("word " * 60_000, False)  # 100,000+ characters were 50,000 spans in the page
    chat, _ = tab.tokenize("hi", True)
    assert "class='tok special'" in chat and "&lt;|im_start|&gt;" in chat
    shaded, likelihood = tab.score_text("The cat sat on the mat.", None)
    assert "class='surp first'" in shaded and "perplexity" in likelihood
    table = tab.score_continuations("LLMs are", " cool", " boring", None)
    assert table.count("\n| '") == 2 and "as likely as the second" in table
    heatmap, note = tab.show_attention("The cat sat on the mat.", 1, 0, False, None)
    assert "class='masked'" in heatmap and "Layer 1, head 0" in note
    _, mean_note = tab.show_attention("The cat sat on the mat.", 0, 0, True, None)
    assert "mean over heads" in mean_note
    grid, lens_note, curves = tab.show_lens("The capital of France is", False, None)
    assert grid.count("<tr><th class='query'>layer") == 2 and "lens final" in grid and "prediction" in lens_note
    tree, parts, cache = tab.show_architecture(1024)
    assert "× 2" in tree and set(parts["part"]) >= {"embedding", "attention", "mlp"} and "For 1,024 tokens" in cache


def test_panels_refuse_bad_input_clearly(use_tiny):
    with pytest.raises(REFUSED, match="layer: must be between 0 and 1"):
        tab.show_attention("hi there", 7, 0, False, None)
    with pytest.raises(REFUSED, match="prompt: is empty"):
        tab.show_lens("   ", False, None)
    with pytest.raises(REFUSED, match="no adapter|not found|adapter"):
        tab.score_text("The cat sat.", "no-such-adapter")


def run_json(capsys, *argv: str) -> dict:
    assert main(["inspect", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_cli_contract(use_tiny, capsys):
    tokens = run_json(capsys, "tokens", "--text", "LLMs are cool")
    assert set(tokens["tokens"][0]) >= {"id", "piece"}
    scored = run_json(capsys, "score", "--prompt", "LLMs are", "--continuation", " cool")
    assert set(scored) >= {"logprob", "rank", "tokens"}
    ppl = run_json(capsys, "perplexity", "--text", "LLMs are cool.")
    assert set(ppl) >= {"mean_loss", "perplexity", "tokens"} and set(ppl["tokens"][1]) >= {"piece", "logprob"}
    attention = run_json(capsys, "attention", "--prompt", "LLMs are cool", "--layer", "1", "--head", "0")
    assert len(attention["weights"]) == len(attention["tokens"])
    lens = run_json(capsys, "lens", "--prompt", "LLMs are cool")
    assert set(lens["layers"][0][0]) >= {"token", "prob"} and len(lens["layers"]) == 2
    card = run_json(capsys, "architecture")
    assert card["total_params"] > 0 and card["kv_cache"]["bytes_per_token"] > 0
    assert main(["inspect", "attention", "--prompt", "hi", "--layer", "9"]) == 2
    assert "invalid parameter layer: must be between 0 and 1" in capsys.readouterr().err
    assert main(["inspect", "perplexity", "--text", ""]) == 2
    assert "text: is empty" in capsys.readouterr().err
    assert main(["inspect"]) == 2


def _click(row: int, column: int, row_value: list | None = None):
    import gradio as gr

    return gr.SelectData(None, {"index": [row, column], "value": None, "row_value": row_value})


def test_heads_patching_and_steering_panels(use_tiny):
    """Issue 40's panels: a grid cell or a table row opens a head's pattern, a patching cell its distribution."""
    from playground import causal

    grid, table, note, report = causal.scan_heads("induction", False, None)
    assert grid.data.shape == (2, 5) and list(grid.data.columns) == ["layer", "H0", "H1", "H2", "H3"]
    assert len(table) == 8 and "8 heads (2 layers × 4)" in note
    pattern, pattern_note = causal.head_from_grid("a b a b", report, None, _click(1, 3))
    assert "class='heatmap'" in pattern and "Layer 1, head 2" in pattern_note
    _, label_note = causal.head_from_grid("a b a b", report, None, _click(1, 0))
    assert "Click a head's cell" in label_note
    _, row_note = causal.head_from_table("a b", None, _click(0, 2, [0, 3, 0.1, 0.2, 0.3]))
    assert "Layer 0, head 3" in row_note
    assert causal.regrid("sink", report).data.shape == (2, 5)

    grid, note, kept, place = causal.run_patch(
        "The Eiffel Tower is in the city of", "The Colosseum is in the city of", "Paris", "", True, None
    )
    assert grid.data.shape == (2, 10) and "logit(`␣Paris`)" in note and len(place["choices"]) == 3
    assert causal.show_place("mlp", kept).data.shape == (2, 10)
    cell = causal.patch_cell("residual", kept, None, _click(1, 9))
    assert "Layer 1, position 8" in cell and "| corrupted run | patched | clean run |" in cell
    assert "Patch first" in causal.patch_cell("residual", None, None, _click(1, 9))

    steered, unsteered, note = causal.run_steer("great\nlovely", "awful\nbad", "Today", 1, 0, 6, 0.7, 3, None)
    assert steered == unsteered and "class='tok proj" in steered and "Vector at layer 1" in note
    with pytest.raises(REFUSED, match="negative: is empty"):
        causal.run_steer("great", "", "Today", 1, 2, 6, 0.7, 3, None)
