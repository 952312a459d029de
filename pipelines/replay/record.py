"""A capsule of each kind of result, made from what ran (the callers: the CLI's `--capsule`, the tabs' "Save capsule")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pipelines.replay import capsules


def completion_result(completion: Any) -> dict[str, Any]:
    """What a capsule records of a generation's result (and a replay compares)."""
    return {
        "text": completion.text,
        "token_ids": [t.id for t in completion.tokens],
        "finish_reason": completion.finish_reason,
    }


def _seeded(params: Any, seed: int) -> Any:
    """The settings with the seed the generator was actually given (a fresh seed is recorded too)."""
    return params.with_seed(seed)


def generation(handle: Any, prompt: str, completion: Any, *, adapter: str | None = None) -> dict[str, Any]:
    return generated(
        handle,
        prompt,
        list(completion.prompt_ids),
        _seeded(completion.params, completion.seed),
        completion_result(completion),
        engine=completion.engine,
        adapter=adapter,
    )


def generated(
    handle: Any,
    prompt: str,
    prompt_ids: Sequence[int],
    params: Any,
    result: dict[str, Any],
    *,
    engine: str,
    adapter: str | None = None,
) -> dict[str, Any]:
    """A generation's capsule from its parts (the Generate tab keeps them in its state): `params` with
    the seed the generator was given, `result` = {"text", "token_ids", "finish_reason"}."""
    inputs = {"prompt": prompt, "prompt_ids": list(prompt_ids), "sampler": capsules.sampler(params)}
    return capsules.make("generate", handle, adapter=adapter, engine=engine, inputs=inputs, result=result)


def comparison(handle: Any, prompt: str, rows: Sequence[Any], *, adapter: str | None = None) -> dict[str, Any]:
    """Two settings on one prompt decoded in one batch (`rows`: A's and B's completions): both samplers with
    the seeds their rows were given, both results."""
    a, b = rows
    inputs = {
        "prompt": prompt,
        "prompt_ids": list(a.prompt_ids),
        "samplers": [capsules.sampler(_seeded(row.params, row.seed)) for row in rows],
    }
    result = {"a": completion_result(a), "b": completion_result(b)}
    return capsules.make("comparison", handle, adapter=adapter, engine=a.engine, inputs=inputs, result=result)


def chat(
    handle: Any,
    messages: Sequence[Any],
    completion: Any,
    prompt: Any,
    *,
    system_prompt: str | None = None,
    adapter: str | None = None,
) -> dict[str, Any]:
    inputs = {
        "messages": [m.to_json() for m in messages],
        "system_prompt": system_prompt,
        "prompt_ids": list(prompt.ids),
        "sampler": capsules.sampler(_seeded(completion.params, completion.seed)),
    }
    return capsules.make(
        "chat", handle, adapter=adapter, engine=completion.engine, inputs=inputs, result=completion_result(completion)
    )


def rag(
    handle: Any,
    collection: str,
    question: str,
    search: Any,
    answered: Any,
    *,
    adapter: str | None = None,
    with_baseline: bool = False,
) -> dict[str, Any]:
    """`answered`: rag.answer.Answered (the passages found, the grounded prompt and its completion).
    `with_baseline`: the answer was decoded in one batch with the answer without retrieval (the RAG tab's
    side by side), which the replay then decodes beside it again."""
    from pipelines.rag import store

    completion, prompt = answered.completion, answered.prompt
    inputs: dict[str, Any] = {
        "collection": collection,
        "index_generation": store.load(collection).name,  # which indexing of the collection answered
        "question": question,
        "retrieval": {"mode": search.mode, "k": search.k},
        "passages": [
            {"chunk_id": h.chunk.id, "source": h.chunk.source, "page": h.chunk.page, "text": h.chunk.text}
            for h in answered.hits
        ],
    }
    result: dict[str, Any] = {"chunk_ids": [h.chunk.id for h in answered.hits]}
    engine = "retrieval only"
    if completion is not None:
        inputs["prompt_ids"] = list(prompt.ids)
        inputs["sampler"] = capsules.sampler(_seeded(completion.params, completion.seed))
        inputs["passages_in_prompt"] = len(prompt.hits)
        inputs["with_baseline"] = with_baseline
        result |= completion_result(completion)
        engine = completion.engine
    return capsules.make("rag", handle, adapter=adapter, engine=engine, inputs=inputs, result=result)


def strategy_results(results: Sequence[Any]) -> dict[str, Any]:
    """What a capsule records of a reasoning run (and a replay compares): each strategy's outputs and answer."""
    return {
        "results": [
            {"strategy": r.strategy, "outputs": [s.output for s in r.samples], "answer": r.answer, "program": r.program}
            for r in results
        ]
    }


def reasoning(
    handle: Any,
    question: str,
    strategies: Sequence[Any],
    params: Any,
    results: Sequence[Any],
    *,
    samples: int = 1,
    token_cap: int | None = None,
    adapter: str | None = None,
) -> dict[str, Any]:
    """`strategies`: reasoning.strategies.Strategy, recorded whole: the Reasoning tab's prompts are editable."""
    from pipelines.engine import generation as engine_choice

    inputs = {
        "question": question,
        "strategies": [s.key for s in strategies],
        "prompts": {s.key: s.to_json() for s in strategies},
        "samples": samples,
        "token_cap": token_cap,
        "sampler": capsules.sampler(params),
    }
    result = strategy_results(results)
    engine = engine_choice.engine_for(handle, adapter).name
    return capsules.make("reasoning", handle, adapter=adapter, engine=engine, inputs=inputs, result=result)


# the spec fields that name a job's data; None means the kind's default source
DATA_FIELDS = ("data", "prompts")
# kinds whose default data is the label store, which changes as people label
FROM_THE_LABEL_STORE = frozenset({"reward", "dpo", "rloo"})


def data_files(kind: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each data file a job read (its path and SHA-256), or where its default data came from."""
    from pathlib import Path

    found: list[dict[str, Any]] = []
    for field in (*DATA_FIELDS, "reward_file"):
        value = spec.get(field)
        if value is None and field in DATA_FIELDS and field in spec:
            source = "the label store" if kind in FROM_THE_LABEL_STORE else "the bundled default"
            found.append({"field": field, "path": None, "source": source})
        elif value is not None:
            found.append({"field": field, "path": str(Path(value)), "sha256": capsules.sha256_of(Path(value))})
    if spec.get("reward_model"):  # RLOO's judge: a folder of weights, by name
        found.append(
            {"field": "reward_model", "name": spec["reward_model"], "sha256": reward_model_sha256(spec["reward_model"])}
        )
    return found


def reward_model_sha256(name: str) -> str:
    from pipelines.train import reward

    return capsules.files_sha256(reward.find(name))


def outputs_sha256(result: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of the weights a job wrote (its *.safetensors files), per result directory."""
    from pathlib import Path

    found = {}
    for key, value in sorted(result.items()):
        if key.endswith("_dir") and isinstance(value, str) and Path(value).is_dir():
            found[key] = capsules.weights_files_sha256(Path(value))
    return found


def finished_job(job: Any) -> dict[str, Any]:
    """The capsule of a job that succeeded (store.jobs.JobInfo), named by the base model it trained on."""
    from pipelines.engine import models
    from pipelines.store import jobs

    if job.status != jobs.SUCCEEDED:
        raise capsules.CapsuleError(f"job {job.name!r} {job.status}: only a job that succeeded has a capsule")
    served, base = models.wait_for_handle(0), job.spec.get("base_model")
    if base and (served is None or base != served.name):
        handle = models.load_handle(base)
    else:
        handle = served or models.get_handle()
    return job_capsule(handle, job.kind, job.spec, job.result)


def job_capsule(handle: Any, kind: str, spec: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A training job: its spec (seed, steps, every hyperparameter), the data it read and the weights it wrote."""
    inputs = {"job": kind, "spec": spec, "data": data_files(kind, spec)}
    return capsules.make(
        "job", handle, adapter=None, engine="trl", inputs=inputs, result={"weights_sha256": outputs_sha256(result)}
    )


# what a command measures rather than computes (timings), and the names of what it saved: left out when a
# replay compares its JSON
MEASURED = re.compile(r"(^|_)(seconds|ms|elapsed|timed_by|cached|run_id|job_id)$|per_second")
# the CLI's flags that never change a result, left out of a command capsule's arguments
NOT_THE_RESULTS = frozenset({"--json", "-v", "--verbose"})


def _arguments(argv: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The command's arguments as replayed (no --capsule, --json or -v; files as absolute paths) and
    each file it read with its SHA-256."""
    from pathlib import Path

    kept: list[str] = []
    files: list[dict[str, str]] = []
    skip = False
    for token in argv:
        if skip or token in NOT_THE_RESULTS or token.startswith("--capsule="):
            skip = False
            continue
        if token == "--capsule":
            skip = True
            continue
        flag, equals, value = token.rpartition("=") if token.startswith("--") and "=" in token else ("", "", token)
        if value and not value.startswith("-") and Path(value).is_file():
            value = str(Path(value).resolve())
            files.append({"path": value, "sha256": capsules.sha256_of(Path(value))})
        kept.append(f"{flag}{equals}{value}")
    return kept, files


def command(
    argv: Sequence[str],
    report: dict[str, Any],
    handle: Any,
    *,
    adapter: str | None = None,
    reward_model: str | None = None,
) -> dict[str, Any]:
    """A deterministic command's result: its arguments, the files and named models it read, the JSON it
    printed. `handle` is the model it used (None when it used none)."""
    arguments, files = _arguments(argv)
    inputs: dict[str, Any] = {"argv": arguments, "files": files}
    if reward_model:
        inputs["reward_model"] = {"name": reward_model, "sha256": reward_model_sha256(reward_model)}
    return capsules.make("command", handle, adapter=adapter, engine="cli", inputs=inputs, result=report)


def comparable(result: Any) -> tuple[Any, list[str]]:
    """The result without what is measured rather than computed (timings), and the keys left out."""
    dropped: set[str] = set()

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            kept = {}
            for key, item in value.items():
                if isinstance(key, str) and MEASURED.search(key):
                    dropped.add(key)
                else:
                    kept[key] = strip(item)
            return kept
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    return strip(result), sorted(dropped)
