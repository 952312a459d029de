"""A tab's recent work, kept in the person's own browser so that a reload loses nothing (issue 43).

Gradio Spaces lose a page's state on refresh (gradio #10559, #10045, #11760); here each tab that
makes results (Generate, Chat, RAG, Reasoning) keeps its last ones in `gr.BrowserState`: the
browser's local storage, encrypted with a key derived from the app's secret, per browser and per
app -- never on the server, so one visitor never sees another's. The newest comes back on reload;
the "History" list reopens an earlier one; "Clear history" forgets them all.

Bounded: at most `LIMIT` entries per tab, each at most `MAX_ENTRY_BYTES` of JSON (an entry over it
drops its heaviest parts first: `shed`). What comes back from the browser is the visitor's to write,
so each entry carries the server's signature over its data (`VisitorKeys.signature`, with a key the page
never sees: the storage's own encryption key is in the page) and an entry without a valid one is
ignored: a tab restores only what it wrote itself.

Signed-in people's entries are also signed for their name (a browser shared by two people shows each
only their own) and kept on the server too (`pipelines.store.work_history`): on another device, or after
the browser's storage was cleared, the page brings them back, merged with what that browser holds.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines.access import visitor_keys
from pipelines.store import work_history

from .sidebar import signed_in_user

STORAGE_KEY = "llm-playground-work"
LATEST = 253402300799.0  # 9999-12-31: later times are not dates (time.localtime overflows)
LIMIT = 8
MAX_ENTRY_BYTES = 64 * 1024
TITLE_CHARS = 60
QUIET: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}


@dataclass
class WorkHistory:
    key: str
    stored: gr.BrowserState
    picker: gr.Dropdown
    clear: gr.Button


_unplaced: list[gr.BrowserState] = []


def build(key: str) -> WorkHistory:
    """The history row (a list of earlier results and a clear button), laid out where it is called.

    Its storage is placed outside the tabs (`place_stores`): a BrowserState inside a tab not yet shown
    is not read from the browser before the page's load events, and the restore would find nothing."""
    stored = gr.BrowserState(
        [], storage_key=f"{STORAGE_KEY}-{key}", secret=visitor_keys().derived("browser-state"), render=False
    )
    _unplaced.append(stored)
    with gr.Row(elem_id=f"{key}-history"):
        picker = gr.Dropdown(
            choices=[],
            value=None,
            label="History (kept in this browser)",
            info="your recent results here: they come back after a reload; pick one to reopen it",
            elem_id=f"{key}-history-pick",
            scale=4,
        )
        clear = gr.Button("Clear history", size="sm", elem_id=f"{key}-history-clear", scale=0, min_width=120)
    return WorkHistory(key, stored, picker, clear)


SAFE_INTEGER = 2**53  # JavaScript's numbers hold integers exactly up to here


def browser_safe(value: Any) -> Any:
    """`value` as it comes back from the browser's JSON: no NaN or infinities (JSON.stringify writes
    null), whole floats as integers (JavaScript writes 1.0 as 1), no integers beyond 2^53 (kept as
    text). Signed in this form, it still verifies on the way back."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() and abs(value) <= SAFE_INTEGER else value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > SAFE_INTEGER:
        return str(value)
    if isinstance(value, dict):
        return {str(k): browser_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [browser_safe(v) for v in value]
    return value


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# whose history the event in this thread reads and writes: the signed-in name, or None (anonymous)
_owner: ContextVar[str | None] = ContextVar("work_history_owner", default=None)


@contextlib.contextmanager
def owned_by(request: gr.Request | None) -> Iterator[str | None]:
    """Within it, entries are signed for, and read as, the request's signed-in person."""
    token = _owner.set(signed_in_user(request))
    try:
        yield _owner.get()
    finally:
        _owner.reset(token)


def _purpose() -> str:
    owner = _owner.get()
    return f"work-history:{owner}" if owner else "work-history"


def place_stores() -> None:
    """Render the histories' storage here (the app's top level, always on the page)."""
    while _unplaced:
        _unplaced.pop(0).render()


def entries(stored: Any) -> list[dict[str, Any]]:
    """The entries of what the browser sent that this server wrote (anything else is ignored)."""
    if not isinstance(stored, list):
        return []
    keys = visitor_keys()
    return [
        e
        for e in stored[:LIMIT]
        if isinstance(e, dict)
        and isinstance(e.get("id"), str)
        and isinstance(e.get("title"), str)
        and isinstance(e.get("data"), dict)
        and keys.signed(_purpose(), _canonical(e["data"]), e.get("signature"))
    ]


def choices(stored: Any) -> list[tuple[str, str]]:
    found = []
    for entry in entries(stored):
        at = _when(entry)  # comes back from the browser unsigned: any number; time.localtime overflows past 9999
        when = time.strftime("%H:%M", time.localtime(at)) if 0 < at < LATEST else "--:--"
        found.append((f"{when} · {entry['title']}", entry["id"]))
    return found


def _size(data: dict[str, Any]) -> int:
    return len(json.dumps(data, ensure_ascii=False).encode())


def bounded(data: dict[str, Any], shed: Sequence[str]) -> dict[str, Any] | None:
    """`data` within MAX_ENTRY_BYTES, dropping the `shed` fields in order until it fits (None if it never does)."""
    data = browser_safe(data)
    for field in (None, *shed):
        if field is not None:
            data.pop(field, None)
        if _size(data) <= MAX_ENTRY_BYTES:
            return data
    return None


def pushed(
    stored: Any, title: str, data: dict[str, Any] | None, *, replaces: Callable[[dict], bool] | None = None
) -> list:
    """The history with `data` as its newest entry; an entry `replaces` says is the same work is taken out
    (a conversation that grew by a turn is one entry, not one per turn)."""
    kept = [e for e in entries(stored) if not (replaces and replaces(e["data"]))]
    if data is None:
        return kept
    data = browser_safe(data)  # signed as it will come back
    title = " ".join(title.split())[:TITLE_CHARS] or "(empty)"
    signature = visitor_keys().signature(_purpose(), _canonical(data))
    entry = {"id": uuid.uuid4().hex[:12], "at": time.time(), "title": title, "data": data, "signature": signature}
    return [entry, *kept][:LIMIT]


def find(stored: Any, entry_id: Any) -> dict[str, Any] | None:
    return next((e["data"] for e in entries(stored) if e["id"] == entry_id), None)


def newest(stored: Any) -> dict[str, Any] | None:
    found = entries(stored)
    return found[0]["data"] if found else None


def remember(
    history: WorkHistory, event: Any, keep: Callable[..., list], inputs: list[Any], *, only_success: bool = False
) -> Any:
    """After `event` (`only_success`: unless it failed), `keep(*input values, stored)` gives the new
    history (see `pushed`); the list follows."""

    def kept(request: gr.Request | None, *values: Any) -> tuple[list, Any]:
        with owned_by(request) as owner:
            if owner:  # what their other devices added since this page loaded is kept too
                values = (*values[:-1], with_server_copy(owner, history.key, values[-1]))
            stored = keep(*values)
            if owner:  # their other devices see it too
                work_history.save(owner, history.key, stored)
            return stored, gr.update(choices=choices(stored), value=stored[0]["id"] if stored else None)

    follow = event.success if only_success else event.then
    return follow(kept, [*inputs, history.stored], [history.stored, history.picker], **QUIET)


def reopen(
    demo: gr.Blocks, history: WorkHistory, restore: Callable[[dict[str, Any]], list], outputs: list[Any]
) -> list[Any]:
    """On page load the newest entry comes back; a pick in the list brings that one. Returns the two
    events, for what must follow a restore (the views drawn from it)."""
    nothing = len(outputs)

    # the page load never writes the browser's copy: a BrowserState written by a load event kept the page's
    # other stored values (the tab it was on) from coming back; the merged list is written with the next result
    def on_load(request: gr.Request | None, stored: Any) -> list[Any]:
        with owned_by(request) as owner:
            if owner:  # what this person kept on their other devices, with what this browser holds
                stored = with_server_copy(owner, history.key, stored)
            data = newest(stored)
            shown = restore(data) if data is not None else [gr.update()] * nothing
            found = choices(stored)
            return [*shown, gr.update(choices=found, value=found[0][1] if found else None)]

    def on_pick(request: gr.Request | None, stored: Any, entry_id: Any) -> list[Any]:
        with owned_by(request) as owner:
            data = find(with_server_copy(owner, history.key, stored) if owner else stored, entry_id)
            return restore(data) if data is not None else [gr.update()] * nothing

    def forget(request: gr.Request | None) -> tuple[list, Any]:
        owner = signed_in_user(request)
        if owner:  # on the server, and on their other devices (work_history.Kept.cleared_at)
            work_history.forget(owner, history.key)
        return [], gr.update(choices=[], value=None)

    # not queued: answered at once, beside the page's other load events, not behind them
    loaded = demo.load(on_load, history.stored, [*outputs, history.picker], queue=False, **QUIET)
    picked = history.picker.input(on_pick, [history.stored, history.picker], outputs, **QUIET)
    history.clear.click(forget, None, [history.stored, history.picker], **QUIET)
    return [loaded, picked]


def with_server_copy(owner: str, key: str, stored: Any) -> list[dict[str, Any]]:
    """This browser's entries merged with those kept on the server for `owner` (call within owned_by);
    the browser's from before they last cleared this history (on any device) are dropped."""
    server = work_history.load(owner, key)
    here = [e for e in entries(stored) if _when(e) > server.cleared_at]
    return merged(here, entries(server.entries))


def merged(*lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of several copies of one history, each once, newest first, at most LIMIT."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in (e for found in lists for e in found):
        seen.setdefault(entry["id"], entry)
    return sorted(seen.values(), key=_when, reverse=True)[:LIMIT]


def _when(entry: dict[str, Any]) -> float:
    """When the entry was made, by the server's clock (0 when it has none or it is out of range). Not covered
    by the signature: a browser that rewrites it only reorders, or keeps after a clearing, its own person's
    entries."""
    at = entry.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not -LATEST < at < LATEST:
        return 0.0  # NaN fails the range test too; a huge int is refused before float() could overflow
    return float(at)


def part(data: dict[str, Any], field: str) -> dict[str, Any]:
    """A nested object of an entry (empty if it is not one)."""
    value = data.get(field)
    return value if isinstance(value, dict) else {}


MAX_INPUT_CHARS = 20_000  # a kept input box (the bias probe's sentences, a steering set: a few KB)


def keep_inputs(demo: gr.Blocks, key: str, fields: dict[str, Any]) -> None:
    """A panel's last inputs (text boxes) kept in the browser and put back on load: a reload leaves the
    Inside tab's prompts as the person had typed them. Only the named boxes' own text is kept."""
    stored = gr.BrowserState(
        {}, storage_key=f"{STORAGE_KEY}-inputs-{key}", secret=visitor_keys().derived("browser-state"), render=False
    )
    _unplaced.append(stored)
    names, boxes = list(fields), list(fields.values())

    def kept(*values: Any) -> dict[str, str]:
        return {n: v[:MAX_INPUT_CHARS] for n, v in zip(names, values, strict=True) if isinstance(v, str)}

    def restore(stored_value: Any) -> list[Any]:
        found = stored_value if isinstance(stored_value, dict) else {}
        return [
            gr.update(value=text(found[n], MAX_INPUT_CHARS)) if isinstance(found.get(n), str) else gr.update()
            for n in names
        ]

    for box in boxes:  # .change, not .input: a value set by a lesson step is the person's too
        box.change(kept, boxes, stored, trigger_mode="always_last", queue=False, **QUIET)
    demo.load(restore, stored, boxes, queue=False, **QUIET)


def text(value: Any, limit: int = 200_000) -> str:
    """A string field of an entry, as the tab wrote it (anything else: empty)."""
    return value[:limit] if isinstance(value, str) else ""
