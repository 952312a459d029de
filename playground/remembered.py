"""What a person set up that a reload must not lose: the tab they were on, their name, the Label
tab's mode and drive -- kept in their own browser (gr.BrowserState: local storage, per browser and
per app), never on the server, so one visitor never sees another's.

Issue 42 (W8): a reload mid-drive lost the annotator's name, tab, mode and drive -- five actions to
get back to the item they still held. Now the page comes back where it was, with the held item on
screen. A first visit (nothing remembered yet) opens on a welcome that offers the lessons.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.access import visitor_keys
from pipelines.labels import drives

from .sidebar import signed_in_user

STORAGE_KEY = "llm-playground"
FIELDS = ("tab", "inner", "name", "mode", "drive", "welcomed")

# In the page's head: whether the person has picked a tab since the page loaded. A restore that
# arrives after that (a slow server, a busy class) must not send them back to where they were.
TAB_WATCH_JS = """
<script>
document.addEventListener('click', (event) => {
  if (event.isTrusted && event.target instanceof Element && event.target.closest('button[role="tab"]')) {
    window.__playgroundTabPicked = true;
  }
}, true);
</script>
"""

# Runs in the browser once the remembered tab id is on the page: opens it unless the person has
# already picked a tab (clicking the tab's own button, so the page does what a click does). The
# Preferences tab's own tabs are set by the server: a person who picks a main tab is not moved by them.
OPEN_TAB_JS = """(tab) => {
  window.__playgroundRestored = true;
  if (tab && !window.__playgroundTabPicked) {
    const button = document.querySelector(`button[role="tab"][data-tab-id="${CSS.escape(tab)}"]`);
    if (button && button.getAttribute('aria-selected') !== 'true') button.click();
  }
  return [];
}"""

# Runs in the browser when a tab is selected: the tab to remember, or what is already remembered. Gradio
# selects the first tab as the page mounts, before the restore has answered; remembering that select put
# "generate" over the tab the person had left (a race CI lost: the reload came back on Generate). Only
# selects after the restore, or after the person's own pick, are theirs. In the browser, not on the server:
# no answer to arrive out of order.
KEEP_TAB_JS = """(kept) => (window.__playgroundRestored || window.__playgroundTabPicked) ? %s : kept"""


@dataclass
class Places:
    """The components whose values are remembered, as the app built them."""

    tabs: gr.Tabs
    tab_ids: dict[str, gr.Tab]  # the main tabs by id
    inner: gr.Tabs  # the Preferences tab's own tabs
    inner_ids: dict[str, gr.Tab]
    name: gr.Textbox
    mode: gr.Radio
    drive: gr.Dropdown
    welcome: gr.Column


def restore(
    tab: Any, inner: Any, name: Any, mode: Any, drive: Any, welcomed: Any, request: gr.Request | None = None
) -> list[Any]:
    """The page as the person left it: the tab's id (opened in the browser, see OPEN_TAB_JS), inner tab, name
    (unless signed in: the login is the name), mode, drive. What comes back from the browser is the
    visitor's to write: only strings of known shapes are used."""
    name = name if isinstance(name, str) and name.strip() and not signed_in_user(request) else None
    names = drives.names()
    return [
        tab if isinstance(tab, str) and tab.isidentifier() else "",
        gr.Tabs(selected=inner) if isinstance(inner, str) and inner else gr.update(),
        gr.update(value=name[:128]) if name else gr.update(),
        gr.update(value=mode) if isinstance(mode, str) and mode else gr.update(),
        # the drive picker is filled here, not by the page load's refill (pickers.LiveDropdown `restored`)
        gr.update(choices=names, value=drive if isinstance(drive, str) and drive in names else None),
        gr.update(visible=welcomed is not True),
    ]


def keep(demo: gr.Blocks, places: Places, *, resume: Callable[[Any], Any] | None = None) -> gr.BrowserState:
    """Remember each place as it changes, and put the page back on load (then `resume(load_event)`:
    the Label tab shows the item its annotator still holds). Each place has its own entry in the
    browser's storage: events that run at once never overwrite each other's."""
    secret = visitor_keys().derived("browser-state")  # readable after an app restart too
    stored = {key: gr.BrowserState(None, storage_key=f"{STORAGE_KEY}-{key}", secret=secret) for key in FIELDS}
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", "queue": False}
    for key, tab_ids in (("tab", places.tab_ids), ("inner", places.inner_ids)):
        for tab_id, tab in tab_ids.items():
            tab.select(None, stored[key], stored[key], js=KEEP_TAB_JS % json.dumps(tab_id), **quiet)
    for key, component in (("name", places.name), ("mode", places.mode), ("drive", places.drive)):
        # .change, not .input: a pasted or autofilled name fires no input event
        component.change(lambda value: value, component, stored[key], **quiet)
    to_open = gr.Textbox(visible=False)  # the tab the browser then opens (OPEN_TAB_JS)
    outputs: list[Any] = [to_open, places.inner, places.name, places.mode, places.drive, places.welcome]
    # queue=False: answered at once, not behind the page's other load events -- a person who clicks a tab
    # right after the page appears must not be sent back by a restore that arrives late
    loaded = demo.load(
        restore,
        [stored[key] for key in FIELDS],
        outputs,
        api_visibility="private",
        show_progress="hidden",
        queue=False,
    )
    loaded.then(None, to_open, None, js=OPEN_TAB_JS, api_visibility="private", queue=False)
    if resume is not None:
        resume(loaded)
    return stored["welcomed"]


def dismiss_welcome() -> tuple[bool, Any]:
    return True, gr.update(visible=False)
