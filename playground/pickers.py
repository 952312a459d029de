"""Pickers of things created while the app runs: adapters, reward models, collections, prompt sets, jobs.

A plain `gr.Dropdown` keeps the choices it was built with, at server start: a page opened later
lists nothing made since, and Gradio refuses an API call naming anything new ("not in the list of
choices"). A `LiveDropdown` reads its list from a function instead, and `keep_fresh` refills every
one of them when a page loads and whenever a person opens one, while API calls are checked
against the list as it is at that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

Choices = Sequence[Any]  # values, or (label, value) pairs, as gr.Dropdown takes them
FIRST = object()  # fallback: the first choice (e.g. the newest job, the first collection)


def normalise(choices: Choices) -> list[Any]:  # gradio types choices as list[tuple[...]]
    return [tuple(c) if isinstance(c, (tuple, list)) else (str(c), c) for c in choices]


class LiveDropdown(gr.Dropdown):
    """A dropdown whose choices come from `list_choices()` now, not from when the app started.

    `fallback` is the value to select when the current one is gone (or on a fresh page): a fixed
    value, `FIRST`, or None (nothing selected). `newest_on_load` selects the fallback on every
    page load even when the old value still exists (the job pickers show the newest job).
    `restored=True`: the page's own restore fills it on load (playground.remembered), so the page
    load's refill leaves it alone -- two load events setting one picker would race.
    """

    is_template = True  # rendered by the frontend's own Dropdown

    def __init__(
        self,
        list_choices: Callable[[], Choices],
        *,
        fallback: Any = None,
        newest_on_load: bool = False,
        restored: bool = False,
        choices: Choices | None = None,
        **kwargs: Any,
    ) -> None:
        self.list_choices = list_choices
        self.fallback = fallback
        self.newest_on_load = newest_on_load
        self.restored = restored
        # `choices` is given when Gradio rebuilds the component for a session from an update
        choices = normalise(list_choices() if choices is None else choices)
        if "value" not in kwargs:
            kwargs["value"] = self._fallback_value(choices)
        super().__init__(choices=choices, **kwargs)

    def _fallback_value(self, choices: list[tuple[Any, Any]]) -> Any:
        if self.fallback is FIRST:
            return choices[0][1] if choices else None
        return self.fallback

    def get_config(self, cls: type | None = None) -> dict[str, Any]:
        # the page builds a plain Dropdown from the Dropdown's own parameters (label, info, ...)
        return super().get_config(gr.Dropdown if cls is None else cls)

    def preprocess(self, payload: Any) -> Any:
        # validate against what exists now: anything created since start is a valid choice
        self.choices = normalise(self.list_choices())
        return super().preprocess(payload)

    def api_info(self) -> dict[str, Any]:
        # the list changes while the app runs: an enum taken at start would mislead API clients
        return {"type": "string"} if not self.multiselect else {"type": "array", "items": {"type": "string"}}

    def refreshed(self, current: Any, *, page_load: bool = False) -> dict:
        """The update that shows today's list: the value is kept unless it is gone.

        Sending a value the person did not pick would undo a choice made while this request was
        on its way, so the value is only set when it must change.
        """
        choices = normalise(self.list_choices())
        values = [value for _, value in choices]
        if current in values and not (page_load and self.newest_on_load):
            return gr.update(choices=choices)
        return gr.update(choices=choices, value=self._fallback_value(choices))


def first_value(choices: Choices) -> Any:
    """The value of the first choice (what FIRST selects), or None."""
    return normalise(choices)[0][1] if choices else None


def live_pickers(demo: gr.Blocks) -> list[LiveDropdown]:
    return [block for block in demo.blocks.values() if isinstance(block, LiveDropdown)]


def keep_fresh(demo: gr.Blocks) -> Any:
    """Refill every LiveDropdown of the app on page load, and each one when it is opened. Returns the page
    load's refill (None without pickers): what sets a picker on load must come after it, or be undone by it."""
    pickers = live_pickers(demo)
    if not pickers:
        return None

    on_load_pickers = [picker for picker in pickers if not picker.restored]

    def on_load(*values: Any) -> list[dict]:
        return [picker.refreshed(value, page_load=True) for picker, value in zip(on_load_pickers, values, strict=False)]

    def on_open(picker: LiveDropdown) -> Callable[[Any], dict]:
        return lambda value: picker.refreshed(value)

    # the values are only compared with today's list, never used: checking them against it first
    # (preprocess) would refuse a value that is gone (a deleted collection, an adapter that no longer
    # fits) and so fail the very refresh that replaces it, for every picker of the page
    quiet: dict[str, Any] = {
        "api_visibility": "private",
        "show_progress": "hidden",
        "concurrency_limit": None,
        "preprocess": False,
    }
    loaded = demo.load(on_load, on_load_pickers, on_load_pickers, **quiet)
    for picker in pickers:
        picker.focus(on_open(picker), picker, picker, **quiet)
    return loaded
