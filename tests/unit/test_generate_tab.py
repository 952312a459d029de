"""The Generate tab's handlers, called as plain Python (no browser)."""

from __future__ import annotations

import pandas as pd
import pytest

from playground import generate
from playground.controls import PARAM_NAMES, parse_stop, to_params
from tests.helpers import SAMPLING_DEFAULTS as DEFAULTS
from tests.refusals import REFUSED


def test_stop_strings_parse_escapes():
    assert parse_stop("\\n\nEND\n\n") == ("\n", "END")
    assert parse_stop("") == ()


def test_to_params_turns_bad_values_into_ui_errors():
    assert to_params(DEFAULTS).seed is None  # -1 means random
    assert to_params({**DEFAULTS, "seed": 5}).seed == 5
    assert to_params({**DEFAULTS, "seed": -5}).seed is None  # any negative seed means random, as the box says
    with pytest.raises(REFUSED, match=r"Top-p \(nucleus\): must be in \(0, 1\]"):
        to_params({**DEFAULTS, "top_p": 3})
    with pytest.raises(REFUSED):
        to_params({**DEFAULTS, "max_new_tokens": "lots"})
    assert set(PARAM_NAMES) == set(DEFAULTS)


def test_generation_streams_and_feeds_the_views(use_tiny):
    updates = list(generate.run_generation("Hello world", **DEFAULTS))
    text, stats, state = updates[-1]
    assert "finished" in stats and len(state["tokens"]) == 8 and text == state["text"]
    html, table = generate.token_view(state)
    assert html.count("class='tok'") >= 8 and len(table) == 8
    raw, final, summary, candidates = generate.inspect("Hello world", state, 3, **DEFAULTS)
    assert "token actually sampled" in summary
    # greedy: the sampled token at position 3 is the inspector's only surviving candidate
    kept = candidates[candidates["cut by"] == "—"]
    assert len(kept) == 1 and kept.iloc[0]["id"] == state["tokens"][3]["id"]
    labels = list(dict.fromkeys(raw["token"]))
    assert isinstance(raw, pd.DataFrame) and labels == sorted(labels) and len(labels) == len(candidates)
    assert set(raw["filter"]) == set(final["filter"]) == set(generate.CUT_COLORS)  # stable colour legend


def test_inspector_follows_the_settings(use_tiny):
    _, final, summary, table = generate.inspect("Hello", {}, 0, **{**DEFAULTS, "temperature": 1.0, "top_k": 3})
    assert (table["cut by"] == "—").sum() == 3
    assert "3 of" in summary and "Right after the prompt" in summary


def test_stale_state_falls_back_to_the_prompt(use_tiny):
    state = {
        "prompt": "something else",
        "prompt_ids": [1],
        "tokens": [{"id": 5, "token": "x", "logprob": -1.0, "top": []}],
    }
    *_, summary, _ = generate.inspect("Hello", state, 1, **DEFAULTS)
    assert "Right after the prompt" in summary


def test_token_view_escapes_hostile_text():
    state = {
        "tokens": [
            {
                "token": "<script>alert(1)</script>",
                "id": 1,
                "logprob": -0.1,
                "top": [{"token": "'\"><img>", "logprob": -0.1}],
            }
        ]
    }
    html, _ = generate.token_view(state)
    assert "<script>" not in html and "<img>" not in html
    assert generate.token_view({})[0].startswith("<p")


def test_empty_prompt_is_a_clear_error(use_tiny):
    with pytest.raises(REFUSED, match="empty"):
        list(generate.run_generation("  ", **DEFAULTS))
    with pytest.raises(REFUSED, match="empty"):
        generate.inspect("", {}, 0, **DEFAULTS)


def test_compare_runs_both_settings_in_one_batch(use_tiny):
    settings = {f"a_{k}": v for k, v in DEFAULTS.items()} | {f"b_{k}": v for k, v in DEFAULTS.items()}
    settings |= {"b_temperature": 1.0, "b_seed": 7}
    a_text, a_stats, b_text, b_stats, _ = list(generate.compare("Hello", **settings))[-1]
    greedy = list(generate.run_generation("Hello", **DEFAULTS))[-1][0]
    assert a_text == greedy and "seed `7`" in b_stats


def test_a_comparison_replays_from_its_capsule_and_loads_both_settings_back(use_tiny):
    """Issue 43: a comparison (A sampled without a seed, B seeded) keeps its capsule; replay decodes both rows
    again in one batch, and loading it puts back the prompt, A's settings in the sidebar and B's."""
    from pipelines.replay import replay

    settings = {f"a_{k}": v for k, v in DEFAULTS.items()} | {f"b_{k}": v for k, v in DEFAULTS.items()}
    settings |= {"a_temperature": 1.1, "a_max_new_tokens": 8, "b_temperature": 0.7, "b_seed": 7, "b_max_new_tokens": 8}
    a_text, _, b_text, _, capsule = list(generate.compare("Hello there", **settings))[-1]
    assert capsule["kind"] == "comparison" and capsule["inputs"]["samplers"][1]["params"]["seed"] == 7
    answer = replay.replay(capsule)
    assert answer["match"] is True and (answer["replayed"]["a"]["text"], answer["replayed"]["b"]["text"]) == (
        a_text,
        b_text,
    )
    values = generate.capsule_files.load_comparison(generate.capsule_files.saved(capsule, "comparison"))
    n = len(PARAM_NAMES)
    prompt, a, b, note = values[0], values[1 : 1 + n], values[1 + n : 1 + 2 * n], values[-1]
    assert prompt == "Hello there" and a[PARAM_NAMES.index("temperature")]["value"] == 1.1
    assert b[PARAM_NAMES.index("seed")]["value"] == 7 and "B's seed: 7" in note


def test_preset_fills_prompt_and_settings():
    values = generate.load_preset("Translation (English to French) · one-shot")
    assert "Bonjour" in values[0]
    assert values[1 + PARAM_NAMES.index("temperature")]["value"] == 0
    assert values[1 + PARAM_NAMES.index("stop")]["value"] == "\\n"


def test_the_how_to_describes_the_tab_as_it_is_drawn():
    """The charts are stacked and named by their titles; the token shading runs red to green."""
    import re

    from pipelines.config import ASSETS

    howto = " ".join((ASSETS / "howto" / "generate.md").read_text(encoding="utf-8").split())
    for title in (generate.RAW_CHART_TITLE, generate.FINAL_CHART_TITLE):
        assert title in howto.replace("**", "")
    assert not re.search(r"\bon the (left|right)\b", howto)  # nothing is side by side
    legend, _ = generate.token_view({"tokens": [{"token": "a", "id": 1, "logprob": -0.1, "top": []}]})
    assert "hsl(0," in legend and "hsl(120," in legend  # the view: hue 0 (red) = unlikely, 120 (green) = likely
    assert "**red**" in howto and "**green**" in howto and "Pale" not in howto
