"""Did alignment help? The adapter against the base model on prompts, judged by a reward model.

Both answer every prompt in one batch (PEFT switches the adapter per row), greedy by default so
the comparison is repeatable; the reward model scores both answers. Win rate counts a tie as
half. A tie is two identical answers, or rewards closer than `TIE_TOLERANCE`: the same text scored
in two batch rows can differ in the last digits (padding changes the arithmetic), and such noise
must not turn into wins. A reward model is only a proxy for people, so the tab also sends the
same pairs to the Preferences queue for human votes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pipelines.engine import chat, generation
from pipelines.engine.chat import Message
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.train import reward

MAX_PROMPTS = 500
BATCH = 8
# Rewards closer than this are a tie. Under the Bradley-Terry model the judge prefers an answer
# with probability sigmoid(difference): 0.01 is a 50.25% preference, i.e. none worth counting.
TIE_TOLERANCE = 0.01


def outcome(base: tuple[str, float], adapter: tuple[str, float], tolerance: float = TIE_TOLERANCE) -> str:
    """ "win", "loss" or "tie" for the adapter, from (answer, reward) of each side."""
    (base_text, base_score), (adapter_text, adapter_score) = base, adapter
    if base_text.strip() == adapter_text.strip() or abs(adapter_score - base_score) <= tolerance:
        return "tie"
    return "win" if adapter_score > base_score else "loss"


def answer_both(
    handle: ModelHandle,
    prompts: Sequence[Sequence[Message]],
    adapter: str,
    params: SamplingParams,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, str]]:
    """(base answer, adapter answer) per prompt."""
    out: list[tuple[str, str]] = []
    for start in range(0, len(prompts), BATCH):
        block = prompts[start : start + BATCH]
        ids, row_params, row_adapters = [], [], []
        for messages in block:
            rendered = chat.build_prompt(handle, messages, max_new_tokens=params.max_new_tokens)
            fitted = replace(params, max_new_tokens=rendered.max_new_tokens)
            ids += [rendered.ids, rendered.ids]
            row_params += [fitted, fitted]
            row_adapters += [None, adapter]
        rows = generation.generate_batch(handle, ids, row_params, adapter=row_adapters)
        out += [(rows[i].text.strip(), rows[i + 1].text.strip()) for i in range(0, len(rows), 2)]
        if progress:
            progress(len(out), len(prompts))
    return out


def evaluate(
    handle: ModelHandle,
    adapter: str,
    reward_model: str,
    prompts: Sequence[Sequence[Message]],
    params: SamplingParams | None = None,
    progress: Callable[[int, int], None] | None = None,
    samples: int = 1,
    tie_tolerance: float = TIE_TOLERANCE,
) -> dict[str, Any]:
    """Base vs adapter on each prompt; with sampling, `samples` seeded draws per prompt and side.

    Greedy answers show what a user sees at temperature 0; sampled ones estimate the expected
    reward of the policy -- the quantity RLOO maximises -- and rows pair base and adapter answers
    drawn with the same seed.
    """
    if not prompts:
        raise InvalidParameter("prompts", "no prompts to evaluate on")
    prompts = list(prompts)[:MAX_PROMPTS]
    params = params or SamplingParams(temperature=0, max_new_tokens=128)
    samples = 1 if params.greedy else max(1, samples)
    answers: list[tuple[str, str]] = []
    for draw in range(samples):
        seeded = params if samples == 1 else replace(params, seed=(params.seed or 0) + draw)
        offset = draw * len(prompts)

        def advance(done: int, total: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, samples * total)

        answers += answer_both(
            handle,
            prompts,
            adapter,
            seeded,
            advance if progress is not None else None,
        )
    prompts = prompts * samples
    scorer = reward.scorer(reward_model)
    rows = []
    counts = {"win": 0, "tie": 0, "loss": 0}
    for messages, (base_text, adapter_text) in zip(prompts, answers, strict=False):
        base_score, adapter_score = scorer.score([m.to_json() for m in messages], [base_text, adapter_text])
        result = outcome((base_text, base_score), (adapter_text, adapter_score), tie_tolerance)
        counts[result] += 1
        rows.append(
            {
                "prompt": chat.flatten_content(messages[-1].content),
                "base": base_text,
                "adapter": adapter_text,
                "reward_base": round(base_score, 4),
                "reward_adapter": round(adapter_score, 4),
                "outcome": result,
            }
        )
    n = len(rows)
    return {
        "win_rate": round((counts["win"] + 0.5 * counts["tie"]) / n, 4),
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
        "tie_tolerance": tie_tolerance,
        "mean_reward_adapter": round(sum(r["reward_adapter"] for r in rows) / n, 4),
        "mean_reward_base": round(sum(r["reward_base"] for r in rows) / n, 4),
        "n": n,
        "samples": samples,
        "temperature": params.temperature,
        "adapter": adapter,
        "reward_model": reward_model,
        "rows": rows,
    }
