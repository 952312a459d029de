"""The tabs a workshop hides, refused by the server too (issue 37): a student's page hides them, and
a student who calls their endpoints anyway (the API page, a script, a saved request) is refused.

Which handler belongs to which tab is read from the built app, not listed by hand: `TabOwners`
records the handlers each tab's `build` registers, and a handler is the tab's when everything that
can start it lies inside that tab (its buttons and boxes, or nothing at all: an API endpoint), or it
runs after such a handler (`.then`, `.success`). Handlers that the page load or the sidebar start
(pickers filled on load, the next-token view that follows the sidebar's sliders) are the page's,
not a tab's: refusing them would greet a student with errors for tabs they never opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from pipelines.lessons import workshops

from .sidebar import visitor_key


class TabOwners:
    """The handlers each tab's build registered (`with owners.tab("Chat", "chat"):` around it)."""

    def __init__(self, demo: gr.Blocks) -> None:
        self.demo = demo
        self.tabs: dict[str, gr.Tab] = {}
        self.registered: dict[str, set[int]] = {}

    @contextmanager
    def tab(self, label: str, tab_id: str) -> Iterator[gr.Tab]:
        before = set(self.demo.fns)
        with gr.Tab(label, id=tab_id) as tab:
            self.tabs[tab_id] = tab
            yield tab
        self.registered[tab_id] = set(self.demo.fns) - before


def _inside(block: Any, tab: gr.Tab) -> bool:
    while block is not None:
        if block is tab:
            return True
        block = getattr(block, "parent", None)
    return False


def handlers_of_tabs(owners: TabOwners, guarded: tuple[str, ...]) -> dict[int, str]:
    """fn id -> the tab (one of `guarded`) whose handler it is, by the rule above."""
    demo, out = owners.demo, {}
    for tab_id in guarded:
        tab = owners.tabs[tab_id]
        for fn_id in sorted(owners.registered.get(tab_id, ())):
            root = demo.fns[fn_id]
            while root.trigger_after is not None:  # a .then / .success runs after its first handler
                root = demo.fns[root.trigger_after]
            blocks = [demo.blocks.get(block_id) if block_id is not None else None for block_id, _ in root.targets]
            if all(block is not None and _inside(block, tab) for block in blocks):
                out[fn_id] = tab_id
    return out


def check_for(tab_id: str) -> Callable[[], None]:
    """What runs before each of the tab's handlers: refuses a workshop student whose class hides the tab."""

    def check() -> None:
        workshops.check_tab(visitor_key(LocalContext.request.get(None)), tab_id)

    check.tab = tab_id  # type: ignore[attr-defined]
    return check
