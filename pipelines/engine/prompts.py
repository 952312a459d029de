"""In-context-learning presets: zero-, one- and few-shot prompts rendered from one task definition.

Keeping tasks as data (instruction, examples, query) means the three prompt styles differ only in
how many worked examples precede the query -- which is the point the Generate tab teaches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.config import ASSETS
from pipelines.errors import InvalidParameter

SHOTS = {"zero-shot": 0, "one-shot": 1, "few-shot": 3}


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    input_label: str
    output_label: str
    examples: tuple[tuple[str, str], ...]
    query: str
    settings: dict[str, Any] = field(default_factory=dict)
    tests: tuple[tuple[str, str], ...] = ()  # labelled items never used as examples, for measuring
    wordings: tuple[str, ...] = ()  # the instruction said other ways (the first is `instruction`), to compare

    def render(self, shots: str, query: str | None = None, *, instruction: str | None = None) -> str:
        if shots not in SHOTS:
            raise InvalidParameter("shots", f"must be one of {', '.join(SHOTS)}, got {shots!r}")
        blocks = [self.instruction if instruction is None else instruction]
        for example_input, example_output in self.examples[: SHOTS[shots]]:
            blocks.append(f"{self.input_label}: {example_input}\n{self.output_label}: {example_output}")
        blocks.append(f"{self.input_label}: {self.query if query is None else query}\n{self.output_label}:")
        return "\n\n".join(blocks)


@lru_cache(maxsize=1)
def load_tasks(path: Path = ASSETS / "prompts" / "generate_presets.json") -> tuple[Task, ...]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        Task(
            name=t["name"],
            instruction=t["instruction"],
            input_label=t["input_label"],
            output_label=t["output_label"],
            examples=tuple((e["input"], e["output"]) for e in t["examples"]),
            query=t["query"],
            settings=dict(t.get("settings", {})),
            tests=tuple((e["input"], e["output"]) for e in t.get("test", [])),
            wordings=tuple(t.get("wordings", ())),
        )
        for t in data["tasks"]
    )


def preset_names() -> list[str]:
    """`"<task> · <shots>"` labels for a dropdown."""
    return [f"{task.name} · {shots}" for task in load_tasks() for shots in SHOTS]


def render_preset(label: str) -> tuple[str, dict[str, Any]]:
    """The prompt and suggested sampling settings for a dropdown label."""
    name, _, shots = label.rpartition(" · ")
    for task in load_tasks():
        if task.name == name:
            return task.render(shots), dict(task.settings)
    raise InvalidParameter("preset", f"no prompt preset named {label!r}")
