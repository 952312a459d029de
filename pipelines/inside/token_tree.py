"""A generation as a tree: pick another token anywhere and the text continues from there as a branch.

The root branch is a generation as it came. A new branch keeps its parent's first `at` tokens,
forces one or more tokens at position `at` (an alternative the model offered there, or text the
person typed), and lets the model continue with the same settings. Each branch stores its whole
token list, so any branch can be shown, inspected and continued on its own, and the tree exports
as one JSON document.

Plain data (dicts and lists) throughout: the tree lives in the page's state and in the export.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from pipelines.engine.completion import record_ids
from pipelines.engine.generation import stream
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter

MAX_BRANCHES = 64  # a page's tree is bounded: the 65th branch is refused with a clear message


def new_tree(
    prompt: str,
    prompt_ids: Sequence[int],
    tokens: Sequence[dict[str, Any]],
    text: str,
    *,
    finish_reason: str | None = None,
    adapter: str | None = None,
) -> dict[str, Any]:
    """A tree whose root is one generation (its tokens as `TokenRecord.to_json` gives them)."""
    return {
        "prompt": prompt,
        "prompt_ids": [int(i) for i in prompt_ids],
        "adapter": adapter,
        "branches": [
            {
                "id": 0,
                "parent": None,
                "at": None,
                "forced": 0,
                "tokens": list(tokens),
                "text": text,
                "finish_reason": finish_reason,
            }
        ],
        "current": 0,
    }


def branch_of(tree: dict[str, Any], branch_id: int) -> dict[str, Any]:
    branches = tree.get("branches") or []
    if not 0 <= int(branch_id) < len(branches):
        raise InvalidParameter("branch", f"no branch {branch_id} (the tree has {len(branches)})")
    return branches[int(branch_id)]


def _forced_records(handle: ModelHandle, parent: dict[str, Any], at: int, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Records of the forced tokens. The first one's log-probability is known when the model
    offered it at that position (it is among the parent's alternatives there); the rest are
    not scored."""
    offered = {}
    if at < len(parent["tokens"]):
        offered = {alt.get("id"): alt["logprob"] for alt in parent["tokens"][at]["top"]}
        offered.setdefault(parent["tokens"][at]["id"], parent["tokens"][at]["logprob"])
    records = []
    for index, token_id in enumerate(ids):
        logprob = offered.get(token_id) if index == 0 else None
        records.append(
            {
                "token": handle.tokenizer.decode([int(token_id)]),
                "id": int(token_id),
                "logprob": logprob,
                "top": [],
                "sampled_prob": None,
                "forced": True,
            }
        )
    return records


def grow(
    handle: ModelHandle,
    tree: dict[str, Any],
    *,
    parent_id: int,
    at: int,
    forced_ids: Sequence[int],
    params: SamplingParams,
) -> Iterator[dict[str, Any]]:
    """Add a branch: the parent's first `at` tokens, then `forced_ids`, then the model's
    continuation with `params`. Yields the new branch as it streams (it is in the tree from the
    first yield, and becomes the tree's current branch)."""
    parent = branch_of(tree, parent_id)
    if not 0 <= int(at) <= len(parent["tokens"]):
        raise InvalidParameter("at", f"must be between 0 and {len(parent['tokens'])}, got {at}")
    if not forced_ids:
        raise InvalidParameter("token", "pick an alternative or type the text to continue with")
    if len(tree["branches"]) >= MAX_BRANCHES:
        raise InvalidParameter("branch", f"the tree has {MAX_BRANCHES} branches already: export it and start again")
    at = int(at)
    prefix = parent["tokens"][:at] + _forced_records(handle, parent, at, forced_ids)
    ids = list(tree["prompt_ids"]) + record_ids(handle.tokenizer, prefix)
    branch: dict[str, Any] = {
        "id": len(tree["branches"]),
        "parent": int(parent_id),
        "at": at,
        "forced": len(forced_ids),
        "tokens": list(prefix),
        "text": handle.tokenizer.decode(record_ids(handle.tokenizer, prefix)),
        "finish_reason": None,
    }
    tree["branches"].append(branch)
    tree["current"] = branch["id"]
    for completion in stream(handle, ids, params, adapter=tree.get("adapter")):
        branch["tokens"] = prefix + [t.to_json() for t in completion.tokens]
        branch["text"] = handle.tokenizer.decode(record_ids(handle.tokenizer, branch["tokens"]))
        branch["finish_reason"] = completion.finish_reason
        yield branch


def outline(tree: dict[str, Any], width: int = 60) -> list[tuple[int, int, str]]:
    """The branches depth-first as (id, depth, a one-line label), for a picker and a tree view."""
    children: dict[int | None, list[dict[str, Any]]] = {}
    for branch in tree.get("branches") or []:
        children.setdefault(branch["parent"], []).append(branch)
    rows: list[tuple[int, int, str]] = []

    def visit(branch: dict[str, Any], depth: int) -> None:
        if branch["parent"] is None:
            label = "original"
        else:
            forced = "".join(t["token"] for t in branch["tokens"][branch["at"] : branch["at"] + branch["forced"]])
            label = f"from #{branch['parent']} at token {branch['at']}: {forced!r}"
        text = branch["text"].replace("\n", " ")
        rows.append(
            (branch["id"], depth, f"#{branch['id']} {label} → {text[:width]}{'…' if len(text) > width else ''}")
        )
        for child in children.get(branch["id"], []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return rows


def export(tree: dict[str, Any]) -> dict[str, Any]:
    """The tree as one JSON document: each branch's text, tokens (with log-probabilities and the
    alternatives the model offered) and where it came from."""
    return {
        "prompt": tree.get("prompt"),
        "adapter": tree.get("adapter"),
        "prompt_tokens": len(tree.get("prompt_ids") or []),
        "branches": [
            {
                **{k: branch[k] for k in ("id", "parent", "at", "forced", "text", "finish_reason")},
                "logprob": sum(t["logprob"] for t in branch["tokens"] if t.get("logprob") is not None),
                "perplexity": _perplexity(branch["tokens"]),
                "tokens": branch["tokens"],
            }
            for branch in tree.get("branches") or []
        ],
    }


def _perplexity(tokens: Sequence[dict[str, Any]]) -> float | None:
    scored = [t["logprob"] for t in tokens if t.get("logprob") is not None]
    return math.exp(-sum(scored) / len(scored)) if scored else None
