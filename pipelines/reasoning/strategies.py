"""The prompting strategies, kept as data: `assets/reasoning/<key>.json`, editable in the tab.

A strategy is a system prompt, few-shot exemplars (question -> answer turns rendered through the
model's chat template) and its own token budget: a direct answer needs a few tokens, a chain of
thought or a program a few hundred, and one shared budget would either cut reasoning short or
let direct answers ramble.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipelines.engine.messages import Message
from pipelines.engine.prompts import ASSETS as ASSETS_DIR
from pipelines.errors import PlaygroundError


class StrategyError(PlaygroundError, ValueError):
    """A strategy's prompt (as a person edited it) or a list of strategy names cannot be used."""


KEYS = ("direct", "cot", "pal")
PROMPTS_DIR = ASSETS_DIR / "reasoning"
PROBLEMS_FILE = PROMPTS_DIR / "problems.jsonl"
MAX_EXEMPLARS = 16
MAX_BUDGET = 1024


@dataclass(frozen=True)
class Strategy:
    key: str
    name: str
    description: str
    system: str
    exemplars: tuple[tuple[str, str], ...]
    max_new_tokens: int

    @property
    def runs_code(self) -> bool:
        return self.key == "pal"

    def messages(self, question: str) -> list[Message]:
        out = [Message("system", self.system)] if self.system else []
        for q, a in self.exemplars:
            out += [Message("user", q), Message("assistant", a)]
        return out + [Message("user", question.strip())]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "system": self.system,
            "exemplars": [{"question": q, "answer": a} for q, a in self.exemplars],
            "max_new_tokens": self.max_new_tokens,
        }


def parse(key: str, text: str | dict[str, Any]) -> Strategy:
    """A strategy from its JSON; every problem is a ValueError that says where."""
    if key not in KEYS:
        raise StrategyError(f"unknown strategy {key!r}; choose from {', '.join(KEYS)}")
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as error:
        raise StrategyError(f"{key} prompt: not valid JSON (line {error.lineno}: {error.msg})") from error
    if not isinstance(data, dict):
        raise StrategyError(f"{key} prompt: expected a JSON object with system, exemplars and max_new_tokens")
    system = data.get("system", "")
    exemplars = data.get("exemplars", [])
    budget = data.get("max_new_tokens", 256)
    if not isinstance(system, str):
        raise StrategyError(f"{key} prompt: 'system' must be text")
    if not isinstance(exemplars, list) or len(exemplars) > MAX_EXEMPLARS:
        raise StrategyError(
            f"{key} prompt: 'exemplars' must be a list of at most {MAX_EXEMPLARS} {{question, answer}} objects"
        )
    pairs = []
    for number, item in enumerate(exemplars, start=1):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(f), str) and str(item[f]).strip() for f in ("question", "answer")
        ):
            raise StrategyError(f"{key} prompt: exemplar {number} needs a non-empty 'question' and 'answer'")
        pairs.append((item["question"], item["answer"]))
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise StrategyError(f"{key} prompt: 'max_new_tokens' must be a whole number from 1 to {MAX_BUDGET}")
    return Strategy(key, str(data.get("name") or key), str(data.get("description") or ""), system, tuple(pairs), budget)


def load(key: str) -> Strategy:
    return parse(key, (PROMPTS_DIR / f"{key}.json").read_text(encoding="utf-8"))


def load_all(keys: tuple[str, ...] | list[str] = KEYS) -> list[Strategy]:
    return [load(k) for k in keys]


def parse_keys(text: str) -> list[str]:
    """'direct,cot,pal' -> ['direct', 'cot', 'pal'] (order kept, duplicates dropped)."""
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in KEYS]
    if unknown or not keys:
        raise StrategyError(f"strategies must be a comma-separated subset of {','.join(KEYS)}, got {text!r}")
    return list(dict.fromkeys(keys))
