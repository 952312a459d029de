"""The token tree: a branch keeps its parent's prefix, forces the picked token, and continues as the model would."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pipelines.engine import generation
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.inside import token_tree
from playground import branches
from tests.helpers import SAMPLING_DEFAULTS
from tests.refusals import REFUSED

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)


def root(handle):
    completion = generation.generate(handle, "The capital of France is", GREEDY)
    tokens = [t.to_json() for t in completion.tokens]
    return token_tree.new_tree("The capital of France is", completion.prompt_ids, tokens, completion.text), completion


def test_a_branch_reproduces_the_forced_prefix_and_continues_as_the_model_would(tiny_handle):
    tree, completion = root(tiny_handle)
    parent = tree["branches"][0]
    alternative = next(a for a in parent["tokens"][3]["top"] if a["id"] != parent["tokens"][3]["id"])
    branch = list(token_tree.grow(tiny_handle, tree, parent_id=0, at=3, forced_ids=[alternative["id"]], params=GREEDY))[
        -1
    ]
    assert [t["id"] for t in branch["tokens"][:3]] == [t["id"] for t in parent["tokens"][:3]]
    assert branch["tokens"][3]["id"] == alternative["id"] and branch["tokens"][3]["forced"]
    assert branch["tokens"][3]["logprob"] == pytest.approx(alternative["logprob"]), (
        "the model offered it: its score is known"
    )
    prefix = completion.prompt_ids + [t["id"] for t in branch["tokens"][:4]]
    alone = generation.generate(tiny_handle, prefix, GREEDY)
    assert [t["id"] for t in branch["tokens"][4:]] == [t.id for t in alone.tokens]
    assert tree["current"] == 1 and branch["parent"] == 0 and branch["at"] == 3
    typed = list(token_tree.grow(tiny_handle, tree, parent_id=1, at=5, forced_ids=[11, 12], params=GREEDY))[-1]
    assert [t["id"] for t in typed["tokens"][5:7]] == [11, 12] and typed["tokens"][6]["logprob"] is None
    rows = token_tree.outline(tree)
    assert [(bid, depth) for bid, depth, _ in rows] == [(0, 0), (1, 1), (2, 2)]
    exported = json.loads(json.dumps(token_tree.export(tree)))
    assert [b["parent"] for b in exported["branches"]] == [None, 0, 1] and exported["branches"][1]["perplexity"] > 0


def test_bad_branches_are_refused_naming_the_parameter(tiny_handle):
    tree, _ = root(tiny_handle)
    with pytest.raises(InvalidParameter, match="at: must be between 0 and"):
        next(token_tree.grow(tiny_handle, tree, parent_id=0, at=99, forced_ids=[5], params=GREEDY))
    with pytest.raises(InvalidParameter, match="branch: no branch 7"):
        next(token_tree.grow(tiny_handle, tree, parent_id=7, at=0, forced_ids=[5], params=GREEDY))
    with pytest.raises(InvalidParameter, match="token: pick an alternative"):
        next(token_tree.grow(tiny_handle, tree, parent_id=0, at=0, forced_ids=[], params=GREEDY))
    tree["branches"] += [dict(tree["branches"][0], id=i) for i in range(1, token_tree.MAX_BRANCHES)]
    with pytest.raises(InvalidParameter, match="export it and start again"):
        next(token_tree.grow(tiny_handle, tree, parent_id=0, at=0, forced_ids=[5], params=GREEDY))


def test_the_generate_tab_branches_from_a_clicked_token(use_tiny):
    tree, completion = root(use_tiny)
    state = {
        "prompt": tree["prompt"],
        "adapter": None,
        "prompt_ids": tree["prompt_ids"],
        "tokens": tree["branches"][0]["tokens"],
        "text": completion.text,
        "finish_reason": completion.finish_reason,
    }
    started, view, picker = branches.start(state)
    assert "original" in view and picker["value"] == 0
    at, alternatives, position = branches.pick_token(state, SimpleNamespace(_data={"index": 2}))
    assert at["value"] == 2 == position["value"] and alternatives["choices"]
    *_, last = branches.grow(
        started, 0, 2, alternatives["value"], "", **{**SAMPLING_DEFAULTS, "temperature": 0.0, "max_new_tokens": 4}
    )
    text, new_state, grown, tree_view, new_picker = last
    assert new_state["tokens"][2]["id"] == alternatives["value"] and "from #0 at token 2" in tree_view
    assert [value for _, value in new_picker["choices"]] == [0, 1]
    shown_text, shown_state, _, _ = branches.show(grown, 0)
    assert shown_state["tokens"] == state["tokens"] and shown_text == completion.text
    path = branches.export(grown)
    assert len(json.loads(open(path, encoding="utf-8").read())["branches"]) == 2
    with pytest.raises(REFUSED, match="Click a token"):
        branches.pick_token(state, SimpleNamespace(_data={"index": 99}))
    with pytest.raises(REFUSED, match="Generate something first"):
        list(branches.grow({}, None, 0, None, ""))
    with pytest.raises(REFUSED, match="Pick an alternative"):
        list(branches.grow(grown, 0, 1, None, "", **SAMPLING_DEFAULTS))
