"""Constitutional AI (Bai et al. 2022; issue 38, safety): the model improves its own answers by
rules instead of by human labels. For each prompt it answers, **critiques** its answer against a
principle of a written constitution ("identify ways in which the response is harmful..."), then
**revises** the answer in the light of the critique. The revision preferred to the first answer is
a preference pair that no person labelled (AI feedback); DPO on those pairs is the RL-from-AI-
feedback step, here with the app's own DPO job.

Every step is a chat turn through the chat template: the critique is asked in the conversation
that holds the prompt and the answer, as in the paper; the revision request quotes the question,
the answer and the critique in one message (a small model asked in a fourth turn mostly repeats
its critique). A small model
writes weak critiques; the mechanics (and how the pairs are only as good as the critic) are the
lesson. The pairs are written as a file apart from the label store: AI feedback is not mixed with
people's labels.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from pipelines import knobs
from pipelines.config import ASSETS
from pipelines.engine import chat
from pipelines.engine.messages import Message
from pipelines.engine.sampling import SamplingParams
from pipelines.knobs import knob
from pipelines.store.files import write_atomic

CONSTITUTION = ASSETS / "constitution.json"
PROMPTS = ASSETS / "prompts" / "constitution_prompts.txt"
MAX_PROMPTS = 50
MAX_PROMPT_CHARS = 2_000
REPEATS_CRITIQUE = 0.8  # similarity (difflib's ratio) above which a revision is its critique again


@functools.cache
def principles() -> dict[str, dict[str, str]]:
    """name -> {"critique": request, "revision": request} (the file's own note left out)."""
    return {k: v for k, v in json.loads(CONSTITUTION.read_text(encoding="utf-8")).items() if not k.startswith("_")}


PRINCIPLES = tuple(principles())


def sample_prompts() -> str:
    return PROMPTS.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class ConstitutionSpec:
    """Which principles critique, and how long each answer, critique and revision may be."""

    principles: list[str] = knob(
        default_factory=lambda: list(PRINCIPLES),
        help=f"the principles used in turn, prompt by prompt, among {', '.join(PRINCIPLES)}",
        label="Principles",
        metavar="NAME",
    )
    max_new_tokens: int = knob(
        80, help="most tokens of each answer, critique and revision", label="Tokens per step", low=8, high=512
    )
    temperature: float = knob(
        0.0, help="0 = greedy (the same pairs every time)", label="Temperature", low=0, high=2, step=0.05
    )
    seed: int = knob(0, help="the sampling seed when the temperature is above 0", label="Seed", low=0, high=2**31 - 1)

    def __post_init__(self) -> None:
        knobs.check(self)
        knobs.check_names("principles", self.principles, PRINCIPLES)


def prompt_lines(text: str | None) -> list[str]:
    return knobs.checked_lines(text, "prompts", fewest=1, most=MAX_PROMPTS, max_chars=MAX_PROMPT_CHARS)


def _say(handle: Any, turns: list[Message], spec: ConstitutionSpec, adapter: str | None) -> str:
    params = SamplingParams(temperature=spec.temperature, max_new_tokens=spec.max_new_tokens, seed=spec.seed)
    completion, _ = chat.reply(handle, turns, params, adapter=adapter)
    return completion.text.strip()


def critique_and_revise(
    handle: Any, prompt: str, principle: str, spec: ConstitutionSpec, adapter: str | None = None
) -> dict[str, Any]:
    """One prompt through the loop: the answer, its critique by the principle, the revision."""
    rule = principles()[principle]
    asked = [Message("user", prompt)]
    response = _say(handle, asked, spec, adapter)
    critique_turns = [*asked, Message("assistant", response), Message("user", rule["critique"])]
    critique = _say(handle, critique_turns, spec, adapter)
    # the revision is asked in one turn that quotes the question, the answer and the critique: asked as a
    # fourth turn of the same chat, the bundled model mostly repeated its critique (10 of 12 sample prompts)
    # where this form gives a rewritten answer (9 of 12 made pairs)
    asked_again = (
        f"Question: {prompt}\n\nFirst answer: {response}\n\nCritique of the first answer: {critique}\n\n"
        f"{rule['revision']}"
    )
    revision = _say(handle, [Message("user", asked_again)], spec, adapter)
    why_not = _no_pair(response, critique, revision)
    return {
        "prompt": prompt,
        "principle": principle,
        "response": response,
        "critique": critique,
        "revision": revision,
        "pair": why_not is None,
        "no_pair": why_not,
    }


def _no_pair(response: str, critique: str, revision: str) -> str | None:
    """Why this revision makes no pair, or None. An empty or unchanged revision teaches nothing, and
    a small model often "revises" by repeating its critique ("The last response is false."): a pair
    preferring that to an answer would teach the policy to talk about answers instead of giving them."""
    if not revision:
        return "the revision is empty"
    if revision == response:
        return "the revision is the first answer unchanged"
    if SequenceMatcher(None, revision.lower(), critique.lower()).ratio() > REPEATS_CRITIQUE:
        return "the revision repeats the critique instead of answering"
    return None


def run(
    handle: Any, prompts: list[str], spec: ConstitutionSpec, adapter: str | None = None
) -> Iterator[dict[str, Any]]:
    """Each prompt's row as it is done; the principles are used in turn."""
    for index, prompt in enumerate(prompts):
        yield critique_and_revise(handle, prompt, spec.principles[index % len(spec.principles)], spec, adapter)


def pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """trl's conversational preference pairs: the revision chosen over the first answer."""
    return [
        {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "chosen": [{"role": "assistant", "content": row["revision"]}],
            "rejected": [{"role": "assistant", "content": row["response"]}],
            "principle": row["principle"],
            "critique": row["critique"],
        }
        for row in rows
        if row["pair"]
    ]


def write_pairs(rows: list[dict[str, Any]], path: Path) -> int:
    """The pairs as JSONL that the DPO job reads (extra fields: the principle and critique that made it)."""
    found = pairs(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in found))  # replaced whole
    return len(found)
