"""ReAct (Yao et al. 2023; issue 38): the model interleaves reasoning with actions. It writes a
*Thought*, then an *Action* -- a tool call -- and the tool's result comes back as an
*Observation* in its own prompt, until it calls `finish[...]`. The tools here are the app's own:
`calculate[...]` runs the expression in the sandbox (the same one PAL's programs run in, never the
app's process), `search[...]` retrieves the best passage from a RAG collection.

The prompt is a plain completion prompt with two worked examples (assets/reasoning/react.txt), as
in the paper; generation stops at "Observation:", so the model never writes its own tool results.
A 135M model follows the format some of the time: what it gets wrong (no Action line, an action
it made up, a loop) is reported as such, step by step, which is the point of looking at a trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines import knobs, sandbox
from pipelines.config import ASSETS
from pipelines.engine import generation
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob

PROMPT = ASSETS / "reasoning" / "react.txt"
ACTION = re.compile(r"Action:\s*(\w+)\[(.*?)\]", re.S)
TOOLS = ("calculate", "search", "finish")
MAX_QUESTION_CHARS = 1_000
MAX_ARGUMENT_CHARS = 300
OBSERVATION_CHARS = 400  # a retrieved passage is cut to this: the model's window is small
STOPS = ("Observation:", "\nQuestion:")


@dataclass(frozen=True)
class ReActSpec:
    """How long the loop may run and how much each step may write."""

    max_steps: int = knob(6, help="most Thought/Action steps before giving up", label="Max steps", low=1, high=12)
    max_new_tokens: int = knob(
        64, help="most tokens of one Thought and its Action", label="Tokens per step", low=8, high=256
    )

    def __post_init__(self) -> None:
        knobs.check(self)


def parse(text: str) -> tuple[str, str | None, str | None]:
    """(the thought, the action's tool, its argument) of one step's text; tool None when there is no
    Action line."""
    found = ACTION.search(text)
    if found is None:
        return text.strip(), None, None
    return text[: found.start()].strip(), found.group(1).lower(), found.group(2).strip()


def _calculate(expression: str) -> tuple[str, bool]:
    if len(expression) > MAX_ARGUMENT_CHARS:
        return f"the expression is longer than {MAX_ARGUMENT_CHARS} characters", False
    report = sandbox.run(f"def solution():\n    return ({expression})\n")
    if not report.ok:
        return f"error: {report.error}", False
    return str(report.result), True


def _search(query: str, collection: str | None) -> tuple[str, bool]:
    if not collection:
        return "no collection is chosen: there are no documents to search", False
    from pipelines.rag import retrieval

    hits = retrieval.search(collection, query[:MAX_ARGUMENT_CHARS], k=1)
    if not hits:
        return "nothing found", False
    text = " ".join(hits[0].chunk.text.split())
    return (text[:OBSERVATION_CHARS] + ("…" if len(text) > OBSERVATION_CHARS else "")), True


def act(tool: str, argument: str, collection: str | None) -> tuple[str, bool]:
    """The observation a tool call gives, and whether the call worked."""
    if tool == "calculate":
        return _calculate(argument)
    if tool == "search":
        return _search(argument, collection)
    return f"there is no tool {tool!r}; the tools are {', '.join(TOOLS)}", False


def run(
    handle: Any, question: str, spec: ReActSpec | None = None, collection: str | None = None
) -> Iterator[dict[str, Any]]:
    """The loop, one step at a time: {"step", "thought", "tool", "argument", "observation", "ok"},
    and a last row with "answer" (None when the model never finished)."""
    spec = spec or ReActSpec()
    question = (question or "").strip()
    if not question:
        raise InvalidParameter("question", "is empty: ask something that needs a calculation or a document")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidParameter("question", f"at most {MAX_QUESTION_CHARS:,} characters")
    transcript = PROMPT.read_text(encoding="utf-8") + f"Question: {question}\n"
    params = SamplingParams(temperature=0.0, max_new_tokens=spec.max_new_tokens, stop=STOPS)
    for step in range(1, spec.max_steps + 1):
        written = generation.generate(handle, transcript + "Thought:", params).text
        thought, tool, argument = parse(written)
        row: dict[str, Any] = {"step": step, "thought": thought, "tool": tool, "argument": argument}
        if tool is None:
            yield {**row, "observation": "no Action line: the model did not call a tool", "ok": False, "answer": None}
            return
        if tool == "finish":
            yield {**row, "observation": None, "ok": True, "answer": argument}
            return
        row["observation"], row["ok"] = act(tool, argument or "", collection)
        yield row
        transcript += f"Thought: {thought}\nAction: {tool}[{argument}]\nObservation: {row['observation']}\n"
    yield {
        "step": spec.max_steps,
        "thought": "",
        "tool": None,
        "argument": None,
        "observation": None,
        "ok": False,
        "answer": None,
        "gave_up": True,
    }
