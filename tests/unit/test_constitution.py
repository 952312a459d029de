"""The Constitutional-AI loop on the tiny model: answer, critique, revise per principle in turn;
the revisions become pairs that the DPO job reads; bad input refused by name."""

from __future__ import annotations

import pytest

from pipelines.errors import InvalidParameter
from pipelines.train import reward
from pipelines.train.align import constitution, dpo

PROMPTS = ["Tell me a joke that makes fun of old people.", "Who will win the next World Cup? Be certain."]


def test_the_bundled_principles_and_prompts():
    assert set(constitution.PRINCIPLES) >= {"harmless", "honest", "concise"}
    for rule in constitution.principles().values():
        assert rule["critique"].startswith("Identify") and "Rewrite" in rule["revision"]
    assert len(constitution.prompt_lines(constitution.sample_prompts())) == 12


def test_each_prompt_goes_through_answer_critique_and_revision(tiny_handle):
    spec = constitution.ConstitutionSpec(principles=["honest", "harmless"], max_new_tokens=8)
    rows = list(constitution.run(tiny_handle, PROMPTS, spec))
    assert [row["principle"] for row in rows] == ["honest", "harmless"]  # in turn, prompt by prompt
    for row in rows:
        assert row["prompt"] in PROMPTS and all(isinstance(row[k], str) for k in ("response", "critique", "revision"))
        assert row["pair"] == (row["no_pair"] is None)
        if row["revision"] in ("", row["response"]):
            assert not row["pair"]
    assert list(constitution.run(tiny_handle, PROMPTS, spec)) == rows  # greedy: the same pairs every time


def test_the_pairs_are_what_dpo_reads(tmp_path):
    rows = [
        {"prompt": p, "principle": "honest", "response": "Certainly X.", "critique": "Overconfident.", "revision": r}
        for p, r in zip(PROMPTS, ["Nobody can know.", "No one can be certain."], strict=True)
    ]
    rows.append({**rows[0], "revision": rows[0]["response"]})  # unchanged: no pair
    rows.append({**rows[0], "revision": "Overconfident!"})  # the critique again: no pair
    for row in rows:
        row["no_pair"] = constitution._no_pair(row["response"], row["critique"], row["revision"])
        row["pair"] = row["no_pair"] is None
    assert [row["no_pair"] for row in rows[2:]] == [
        "the revision is the first answer unchanged",
        "the revision repeats the critique instead of answering",
    ]
    path = tmp_path / "pairs.jsonl"
    assert constitution.write_pairs(rows, path) == 2
    read, errors = reward.load_pairs(dpo.DPOSpec(out="cai", data=str(path)))
    assert not errors and len(read) == 2
    assert (
        read[0]["chosen"][-1]["content"] == "Nobody can know." and read[0]["rejected"][-1]["content"] == "Certainly X."
    )


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: constitution.ConstitutionSpec(principles=[]), "principles"),
        (lambda: constitution.ConstitutionSpec(principles=["obedient"]), "principles"),
        (lambda: constitution.ConstitutionSpec(max_new_tokens=2), "max_new_tokens"),
        (lambda: constitution.prompt_lines(" \n "), "prompts"),
        (lambda: constitution.prompt_lines("\n".join(["q"] * 51)), "prompts"),
        (lambda: constitution.prompt_lines("x" * 2001), "prompts"),
    ],
)
def test_bad_input_is_refused_by_name(make, field):
    with pytest.raises(InvalidParameter) as refused:
        make()
    assert refused.value.param == field
