"""Generate › Per-token view › Token tree: click a generated token, pick another, continue from there.

The tree (`pipelines.inside.token_tree`) lives in the page's state. The Generate tab's own state (the
tokens its views and distribution inspector read) follows the branch on show, so every view of
the tab works on any branch.
"""

from __future__ import annotations

import html
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.engine import models
from pipelines.inside import token_tree

from .controls import Throttle, show_token, to_params
from .errors import UserError

UI_UPDATE_SECONDS = 0.1
# the per-token view's spans carry data-index; a click on one becomes a "click" event with its index
PICK_JS = """
element.addEventListener('click', (event) => {
  const span = event.target.closest('[data-index]');
  if (span) trigger('click', {index: Number(span.dataset.index)});
});
"""


def start(state: dict[str, Any] | None) -> tuple[dict[str, Any], str, Any]:
    """A new tree from the generation that just finished (the Generate tab's state)."""
    state = state or {}
    if not state.get("tokens"):
        return {}, "", gr.update(choices=[], value=None)
    tree = token_tree.new_tree(
        state["prompt"],
        state["prompt_ids"],
        state["tokens"],
        state["text"],
        finish_reason=state.get("finish_reason"),
        adapter=state.get("adapter"),
    )
    return tree, tree_html(tree), _picker(tree)


def redraw(tree: dict[str, Any] | None) -> tuple[str, Any]:
    """The tree's view and branch list, for a tree put back on the page (a reload, the history)."""
    if not tree or not tree.get("branches"):
        return "", gr.update(choices=[], value=None)
    return tree_html(tree), _picker(tree)


def _picker(tree: dict[str, Any]) -> Any:
    rows = token_tree.outline(tree)
    return gr.update(choices=[(("· " * depth) + label, bid) for bid, depth, label in rows], value=tree["current"])


def tree_html(tree: dict[str, Any]) -> str:
    rows = token_tree.outline(tree, width=90)
    items = "".join(
        f"<li class='{'current' if bid == tree.get('current') else ''}' style='margin-left:{depth * 1.2}em'>"
        f"{html.escape(label)}</li>"
        for bid, depth, label in rows
    )
    return f"<ul class='token-tree'>{items}</ul>"


def _state_of(tree: dict[str, Any], branch: dict[str, Any]) -> dict[str, Any]:
    """The Generate tab's state for a branch: its views and the inspector read it as a generation."""
    return {
        "prompt": tree["prompt"],
        "adapter": tree.get("adapter"),
        "prompt_ids": tree["prompt_ids"],
        "tokens": branch["tokens"],
        "text": branch["text"],
        "finish_reason": branch["finish_reason"],
    }


def pick_token(state: dict[str, Any] | None, evt: gr.EventData) -> tuple[Any, Any, Any]:
    """A token was clicked: branch there, offering the model's alternatives at that position."""
    tokens = (state or {}).get("tokens") or []
    index = int(getattr(evt, "_data", {}).get("index", -1) if evt is not None else -1)
    if not 0 <= index < len(tokens):
        raise UserError("Click a token of the generated text.")
    token = tokens[index]
    choices = [
        (f"{show_token(alt['token'])}  (p = {math.exp(alt['logprob']):.3f})", alt["id"])
        for alt in token["top"]
        # a remote server's alternative that is not one local token (id -1) can be typed instead
        if alt.get("id") is not None and alt["id"] >= 0 and alt["id"] != token["id"]
    ]
    return (
        gr.update(value=index),
        gr.update(choices=choices, value=choices[0][1] if choices else None),
        gr.update(value=index),
    )


def grow(
    tree: dict[str, Any] | None,
    branch_id: int | None,
    at: float | None,
    alternative: int | None,
    typed: str,
    **sampling: Any,
) -> Iterator[tuple[Any, ...]]:
    """Continue from token `at` of the shown branch with the picked alternative (or typed text)."""
    if not tree or not tree.get("branches"):
        raise UserError("Generate something first: the tree starts from a generation.")
    handle = models.get_handle()
    if typed and typed.strip("\n"):
        forced = list(handle.tokenizer(typed, add_special_tokens=False)["input_ids"])
    elif alternative is not None:
        forced = [int(alternative)]
    else:
        raise UserError("Pick an alternative, or type the text to continue with.")
    params = to_params(sampling)
    throttle = Throttle(UI_UPDATE_SECONDS)
    parent = tree.get("current", 0) if branch_id is None else int(branch_id)
    for branch in token_tree.grow(handle, tree, parent_id=parent, at=int(at or 0), forced_ids=forced, params=params):
        done = branch["finish_reason"] is not None
        if throttle.due(final=done):
            yield (
                branch["text"],
                _state_of(tree, branch),
                tree,
                tree_html(tree),
                _picker(tree) if done else gr.update(),
            )


def show(tree: dict[str, Any] | None, branch_id: int | None) -> tuple[Any, ...]:
    """Navigate: the chosen branch becomes the text, the token views' and the inspector's."""
    if not tree or branch_id is None:
        return gr.update(), gr.update(), gr.update(), gr.update()
    branch = token_tree.branch_of(tree, int(branch_id))
    tree["current"] = branch["id"]
    return branch["text"], _state_of(tree, branch), tree, tree_html(tree)


def export(tree: dict[str, Any] | None) -> str:
    """The tree as a JSON file to download."""
    if not tree or not tree.get("branches"):
        raise UserError("Generate something first: there is no tree to export yet.")
    folder = Path(tempfile.mkdtemp(prefix="token-tree-"))
    path = folder / "token-tree.json"
    path.write_text(json.dumps(token_tree.export(tree), ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)
