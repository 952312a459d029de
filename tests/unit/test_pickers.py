"""Live pickers: a value that no longer exists is refused by real events, but never blocks a refresh."""

from __future__ import annotations

import gradio as gr
import pytest

from playground.pickers import FIRST, LiveDropdown, keep_fresh


def test_a_picker_whose_value_is_gone_is_refreshed_not_refused():
    items = ["made-at-start"]
    with gr.Blocks() as demo:
        picker = LiveDropdown(lambda: list(items), fallback=FIRST)
        keep_fresh(demo)
    assert picker.value == "made-at-start"
    items[:] = ["made-later"]  # deleted since, or no longer offered (a bundled adapter on another model)
    with pytest.raises(gr.Error, match="not in the list of choices"):
        picker.preprocess("made-at-start")  # an event that would use the value refuses it
    # the page-load and on-open refreshes only compare values with today's list: they take them raw,
    # so one stale picker cannot fail the refresh of every picker on the page
    refreshes = list(demo.fns.values())
    assert len(refreshes) == 2 and not any(fn.preprocess for fn in refreshes)
    assert picker.refreshed("made-at-start", page_load=True)["value"] == "made-later"
