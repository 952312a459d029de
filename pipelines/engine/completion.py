"""What a generation produces, row by row, whichever engine made it (torch, llama.cpp or a remote server).

Kept apart from `generation` so the remote engine's stream (`remote_stream`) fills the same rows
without importing the local decoding machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.engine.sampling import SamplingParams


@dataclass
class TokenRecord:
    token: str
    id: int
    logprob: float  # log P(token) under the model at temperature 1 (before any sampling filter)
    top: list[dict[str, Any]]  # the model's most likely alternatives at this position
    sampled_prob: float  # probability the token had under the active sampling settings

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "id": self.id,
            "logprob": self.logprob,
            "top": self.top,
            "sampled_prob": self.sampled_prob,
        }


@dataclass
class Completion:
    """One row of a generation, updated in place while it streams."""

    prompt_ids: list[int]
    params: SamplingParams
    seed: int
    text: str = ""  # what may be shown: held back while it could still become a stop string
    tokens: list[TokenRecord] = field(default_factory=list)
    finish_reason: str | None = None  # "length" | "stop" | "eos" | "cancelled" | "error"
    seconds: float = 0.0
    max_new_tokens: int = 0  # after fitting into the context window
    # which engine ran the forward passes: "torch", "torch-fp16" (the lean decoder), "llama.cpp" or "openai"
    engine: str = "torch"
    # while the row waits for a decoding slot: how many requests are ahead of it (0 = next); else None
    queue_position: int | None = None
    # why the row ended early when its engine failed (finish_reason "error"; the text so far is kept)
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def completion_ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def tokens_per_second(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tokens": [t.to_json() for t in self.tokens],
            "finish_reason": self.finish_reason,
            "tokens_per_second": round(self.tokens_per_second, 3),
            "prompt_tokens": len(self.prompt_ids),
            "completion_tokens": len(self.tokens),
            "seed": self.seed,
            "seconds": round(self.seconds, 4),
            "engine": self.engine,
            **({"error": self.error} if self.error else {}),
        }


def _find_stop(text: str, stops: tuple[str, ...], search_from: int) -> int | None:
    hits = [i for s in stops if (i := text.find(s, max(0, search_from - len(s) + 1))) != -1]
    return min(hits) if hits else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


def record_ids(tokenizer: Any, records: list[dict[str, Any]]) -> list[int]:
    """Token ids of generated token records (their JSON form), to continue or inspect from them.

    A remote server's token whose text is not exactly one local token has id -1: its text is
    encoded with the local tokenizer instead, which is what the server is sent anyway (text).
    """
    ids: list[int] = []
    for record in records:
        if int(record["id"]) >= 0:
            ids.append(int(record["id"]))
        else:
            ids.extend(int(i) for i in tokenizer.encode(record["token"], add_special_tokens=False))
    return ids
