"""Verifiable rewards for GRPO: rules that check an answer, instead of a learned judge.

Each is a trl reward function, `f(prompts, completions, answer=[...], **_) -> list[float | None]`
(trl passes the dataset's other columns by name; None means "no reward for this one" and is left
out of the means). The presets:

- correctness: 1 when the completion's final number (the reasoning tab's extraction) is the known answer;
- pal: 1 when the completion's Python `solution()`, run in the sandbox, returns the known answer;
- format: 1 when the completion ends with a line "Answer: N" (N a number), 0.5 when it states an
  answer elsewhere ("the answer is N", "#### N");
- length: 0 up to `LENGTH_TARGET` words, then down to -1 at twice as many (a penalty);
- number: 0.1 per number in the completion, up to 1 — exploitable on purpose: a policy collects it
  by writing numbers, right or wrong, without solving anything (the reward-hacking lesson);
- file: a reward the user writes in Python, `def reward(prompt, completion, answer) -> float`, run
  in the sandbox (never in this process) once per batch, each row guarded so one failing row
  gives None for that row alone; a batch that times out or breaks the sandbox gives None for the
  batch and a message in the job's log.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from pipelines import sandbox
from pipelines.errors import InvalidParameter
from pipelines.reasoning import extract
from pipelines.reasoning.solve import extract_program

log = logging.getLogger(__name__)

PRESETS = {
    "correctness": "1 if the final number equals the known answer, else 0",
    "pal": "1 if the completion's Python solution(), run in the sandbox, returns the known answer, else 0",
    "format": "1 if the completion ends with a line 'Answer: N'; 0.5 if it states its answer elsewhere "
    "('Answer: N', 'the answer is N', '#### N'); else 0",
    "length": "0 up to 80 words, then falling to -1 at 160 words (a penalty for rambling)",
    "number": "0.1 per number in the completion, up to 1: pays for numbers, not for the right one "
    "(exploitable on purpose: the reward-hacking lesson)",
}
FILE = "file"  # the user's own reward, from --reward-file
LENGTH_TARGET = 80  # words
_FINAL = re.compile(r"(?:^|\n)\s*Answer:\s*(-?\$?[\d,]*\.?\d+)\s*\.?\s*$")
_STATED = re.compile(r"(?i)(?:answer:|answer is|####)\s*-?\$?[\d,]*\.?\d")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
MAX_REWARD_SOURCE = 20_000  # characters of a reward file
USER_LIMITS = sandbox.SandboxLimits(timeout_seconds=10.0, cpu_seconds=10)  # per batch


def text_of(value: Any) -> str:
    """A prompt or completion as text: trl passes strings, or message lists for conversational data."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return str(value)


def correctness(completions: Sequence[Any], answer: Sequence[float], **_: Any) -> list[float | None]:
    return [
        float(extract.is_correct(extract.extract_answer(text_of(c)), float(a)))
        for c, a in zip(completions, answer, strict=True)
    ]


def pal(completions: Sequence[Any], answer: Sequence[float], **_: Any) -> list[float | None]:
    scores: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        report = sandbox.run(extract_program(text_of(completion)), sandbox.SandboxLimits(timeout_seconds=5.0))
        value = extract.from_value(report.result) if report.ok else None
        scores.append(float(extract.is_correct(value, float(gold))))
    return scores


def format_(completions: Sequence[Any], **_: Any) -> list[float | None]:
    """Graded, so that a group of answers that all miss the exact format still differ."""
    texts = [text_of(c).strip() for c in completions]
    return [1.0 if _FINAL.search(t) else 0.5 if _STATED.search(t) else 0.0 for t in texts]


def length(completions: Sequence[Any], **_: Any) -> list[float | None]:
    words = [len(text_of(c).split()) for c in completions]
    return [-min(1.0, max(0, n - LENGTH_TARGET) / LENGTH_TARGET) for n in words]


def number(completions: Sequence[Any], **_: Any) -> list[float | None]:
    return [min(1.0, 0.1 * len(_NUMBER.findall(text_of(c)))) for c in completions]


FUNCTIONS: dict[str, Callable[..., list[float | None]]] = {
    "correctness": correctness,
    "pal": pal,
    "format": format_,
    "length": length,
    "number": number,
}


# --- the user's reward, in the sandbox --------------------------------------------------------------

_HARNESS = """

import json as _json
_ROWS = _json.loads({rows!r})


def solution():
    out = []
    for _row in _ROWS:
        try:
            _value = float(reward(_row["prompt"], _row["completion"], _row["answer"]))
            out.append(_value if _value == _value and abs(_value) != float("inf") else None)
        except Exception as _error:  # one row's failure is that row's alone
            out.append(None)
    return out
"""


def check_source(source: str) -> str:
    """A reward file that can be run: Python, not too long, defining reward(prompt, completion, answer)."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidParameter("reward_file", "is empty: define reward(prompt, completion, answer) -> float")
    if len(source) > MAX_REWARD_SOURCE:
        raise InvalidParameter("reward_file", f"is {len(source):,} characters; the limit is {MAX_REWARD_SOURCE:,}")
    try:
        tree = compile(source, "reward.py", "exec", flags=0x400, dont_inherit=True)  # PyCF_ONLY_AST
    except (SyntaxError, ValueError) as error:
        raise InvalidParameter("reward_file", f"is not valid Python: {error}") from error
    defined = {getattr(node, "name", None) for node in getattr(tree, "body", [])}
    if "reward" not in defined:
        raise InvalidParameter("reward_file", "must define a function reward(prompt, completion, answer) -> float")
    return source


class SandboxedReward:
    """The user's reward function, called in the sandbox once per batch."""

    def __init__(self, source: str, limits: sandbox.SandboxLimits = USER_LIMITS) -> None:
        self.source, self.limits = source, limits
        self.last_error: str | None = None
        self.__name__ = FILE  # trl names each reward function's metrics after it

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[float], **_: Any
    ) -> list[float | None]:
        rows = [
            {"prompt": text_of(p), "completion": text_of(c), "answer": float(a)}
            for p, c, a in zip(prompts, completions, answer, strict=True)
        ]
        report = sandbox.run(self.source + _HARNESS.format(rows=json.dumps(rows)), self.limits)
        values = report.result if report.ok else None
        if not isinstance(values, list) or len(values) != len(rows):
            self.last_error = report.error or f"reward returned {type(values).__name__}, not one number per row"
            log.warning("the reward file failed on a batch of %d: %s", len(rows), self.last_error)
            return [None] * len(rows)
        return [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


# --- choosing and weighting -------------------------------------------------------------------------


def parse(items: Sequence[str], *, has_file: bool) -> list[tuple[str, float]]:
    """ "name" or "name:weight" items -> [(name, weight)]; the file reward is added (weight 1) when a
    file is given and not named."""
    chosen: dict[str, float] = {}
    for item in items:
        name, _, weight = str(item).strip().partition(":")
        name = name.strip().lower()
        if name not in (*FUNCTIONS, FILE):
            raise InvalidParameter("rewards", f"unknown reward {name!r}; choose among {', '.join([*FUNCTIONS, FILE])}")
        if name == FILE and not has_file:
            raise InvalidParameter("rewards", "'file' needs a reward file (--reward-file)")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError as error:
            raise InvalidParameter("rewards", f"{item!r}: the weight after ':' must be a number") from error
        if not math.isfinite(value) or value == 0:
            raise InvalidParameter("rewards", f"{item!r}: the weight must be a non-zero number")
        if name in chosen:
            raise InvalidParameter("rewards", f"{name!r} is chosen twice")
        chosen[name] = value
    if has_file:
        chosen.setdefault(FILE, 1.0)
    if not chosen:
        raise InvalidParameter("rewards", "choose at least one reward")
    return list(chosen.items())


def functions(chosen: Sequence[tuple[str, float]], source: str | None) -> list[Callable[..., list[float | None]]]:
    return [SandboxedReward(source or "") if name == FILE else FUNCTIONS[name] for name, _ in chosen]
