"""One question under several strategies at once: one batched generation, then answers.

Every strategy x sample is a row of the same batch (the same sampling settings, each with its own
token budget and seed), so the comparison is fair and costs one pass over the model. Direct and
chain-of-thought answers are read from the text; PAL's program is run in `pipelines.sandbox` and
its return value is the answer. With several samples per strategy the answer is the majority
vote (self-consistency, Wang et al. 2022), and the vote distribution is kept.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pipelines import knobs, sandbox
from pipelines.engine import chat, generation
from pipelines.engine.models import ModelHandle
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.reasoning import extract
from pipelines.reasoning.strategies import Strategy

MAX_QUESTION_CHARS = 4000
MAX_SAMPLES = 16
_FENCE = re.compile(r"```(?:python|py)?[^\n]*\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class SampleSpec:
    """How many answers each strategy draws (self-consistency): one definition for the tab and `reason`."""

    samples: int = knob(
        1,
        help="samples per strategy; above 1, the answer is the majority vote (needs a temperature above 0)",
        label="Samples per strategy (self-consistency)",
        info="above 1: majority vote; needs temperature > 0",
        low=1,
        high=MAX_SAMPLES,
        step=1,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


@dataclass
class Sample:
    output: str = ""
    tokens: int = 0
    seconds: float = 0.0
    finish_reason: str | None = None
    program: str | None = None
    run: dict[str, Any] | None = None  # the sandbox's report for PAL
    answer: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "finish_reason": self.finish_reason,
            "program": self.program,
            "run": self.run,
            "answer": self.answer,
        }


@dataclass
class StrategyResult:
    strategy: str
    name: str
    samples: list[Sample]
    prompt_tokens: int = 0
    notice: str = ""
    answer: float | None = None
    votes: dict[str, int] | None = None
    seconds: float = 0.0
    correct: bool | None = None
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # while its rows wait for a decoding slot: requests ahead of them (pipelines/engine/scheduler.py); else None
    queue_position: int | None = None

    @property
    def output(self) -> str:
        return self.samples[0].output if self.samples else ""

    @property
    def program(self) -> str | None:
        return self.samples[0].program if self.samples else None

    @property
    def mean_tokens(self) -> float:
        return sum(s.tokens for s in self.samples) / len(self.samples) if self.samples else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "output": self.output,
            "program": self.program,
            "answer": self.answer,
            "votes": self.votes,
            "seconds": round(self.seconds, 3),
            "name": self.name,
            "tokens": round(self.mean_tokens, 1),
            "correct": self.correct,
            "prompt_tokens": self.prompt_tokens,
            "error": (self.samples[0].run or {}).get("error") if self.samples else None,
            "samples": [s.to_json() for s in self.samples] if len(self.samples) > 1 else None,
        }


def extract_program(text: str) -> str:
    """The code in a PAL reply: the fenced block that defines solution(), else the first block, else the text."""
    blocks = [m.group(1) for m in _FENCE.finditer(text)]
    for block in blocks:
        if "def solution" in block:
            return block.strip("\n")
    if blocks:
        return blocks[0].strip("\n")
    return text.strip()


def vote(answers: Sequence[float | None]) -> tuple[float | None, dict[str, int]]:
    """Majority over the samples' answers; "no answer" is counted but never wins against a number."""
    counts = Counter(extract.format_number(a) for a in answers)
    numbers = Counter(extract.format_number(a) for a in answers if a is not None)
    if not numbers:
        return None, dict(counts)
    best = max(numbers.items(), key=lambda item: item[1])[0]  # ties: the answer reached first
    return next(a for a in answers if a is not None and extract.format_number(a) == best), dict(counts)


def check_inputs(question: str, samples: int, params: SamplingParams) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InvalidParameter("question", "is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidParameter("question", f"is {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}")
    SampleSpec(samples=int(samples))
    if samples > 1 and params.temperature == 0:
        raise InvalidParameter(
            "temperature", "self-consistency needs a temperature above 0: at temperature 0 every sample is the same"
        )
    return question.strip()


def _finish(result: StrategyResult, strategy: Strategy, gold: float | None, limits: sandbox.SandboxLimits) -> None:
    for sample in result.samples:
        if strategy.runs_code:
            sample.program = extract_program(sample.output)
            report = sandbox.run(sample.program, limits)
            sample.run = report.to_json()
            sample.seconds += report.seconds
            sample.answer = extract.from_value(report.result) if report.ok else None
        else:
            sample.answer = extract.extract_answer(sample.output)
    answers = [s.answer for s in result.samples]
    if len(answers) > 1:
        result.answer, result.votes = vote(answers)
    else:
        result.answer = answers[0]
    result.seconds = max(s.seconds for s in result.samples)
    result.correct = extract.is_correct(result.answer, gold) if gold is not None else None
    result.done = True


def stream_solve(
    handle: ModelHandle,
    question: str,
    strategies: Sequence[Strategy],
    params: SamplingParams,
    *,
    samples: int = 1,
    gold: float | None = None,
    adapter: str | None = None,
    limits: sandbox.SandboxLimits | None = None,
    token_cap: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[list[StrategyResult], None, None]:
    """Stream every strategy's outputs while they generate; the last yield has answers and votes.

    Each strategy generates up to its own `max_new_tokens`; `token_cap`, when given, lowers them all.
    """
    question = check_inputs(question, samples, params)
    if not strategies:
        raise InvalidParameter("strategies", "choose at least one strategy")
    limits = limits or sandbox.SandboxLimits()
    prompts, row_params, owners = [], [], []
    results = []
    for strategy in strategies:
        budget = min(strategy.max_new_tokens, token_cap) if token_cap else strategy.max_new_tokens
        prompt = chat.build_prompt(handle, strategy.messages(question), max_new_tokens=budget)
        results.append(
            StrategyResult(
                strategy.key,
                strategy.name,
                [Sample() for _ in range(samples)],
                prompt_tokens=prompt.prompt_tokens,
                notice=prompt.notice(),
            )
        )
        for index in range(samples):
            seed = params.seed + index if params.seed is not None else None
            prompts.append(prompt.ids)
            row_params.append(replace(params, max_new_tokens=budget, seed=seed))
            owners.append((len(results) - 1, index))
    started = time.monotonic()
    rows: list[generation.Completion] = []
    for rows in generation.stream_batch(handle, prompts, row_params, adapter=adapter, should_stop=should_stop):
        for result in results:
            result.queue_position = None
        for row, (which, index) in zip(rows, owners, strict=False):
            if row.queue_position is not None and not row.tokens:
                waiting = results[which].queue_position
                results[which].queue_position = (
                    row.queue_position if waiting is None else min(waiting, row.queue_position)
                )
            sample = results[which].samples[index]
            sample.output, sample.tokens, sample.finish_reason = row.text, len(row.tokens), row.finish_reason
            if row.done and not sample.seconds:
                sample.seconds = time.monotonic() - started
        yield results
    for result, strategy in zip(results, strategies, strict=False):
        _finish(result, strategy, gold, limits)
    yield results


def solve(
    handle: ModelHandle, question: str, strategies: Sequence[Strategy], params: SamplingParams, **kwargs: Any
) -> list[StrategyResult]:
    results: list[StrategyResult] = []
    for results in stream_solve(handle, question, strategies, params, **kwargs):  # noqa: B007 - a stream drained for its last value
        pass
    return results
