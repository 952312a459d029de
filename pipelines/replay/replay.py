"""Make a capsule's result again and say whether it matches.

Before anything runs, what would make the replay a different experiment is refused with the
reason: another model's weights, an adapter whose files changed (or is gone), a chat template or
tokenizer that no longer gives the recorded prompt tokens, a RAG collection whose passages changed.
What can only make the numbers differ slightly is run anyway and named when it did: another CPU
kind or thread count (float sums are ordered differently), another engine, a remote server (its
sampling is its own). The recorded prompt token ids, not the text, are what is decoded again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.replay import capsules, record
from pipelines.replay.capsules import CapsuleError


def _refuse_other_model(document: dict, handle: Any) -> None:
    recorded = document["model"]
    here = capsules.weights_sha256(handle)
    if recorded.get("weights_sha256") != here:
        raise CapsuleError(
            f"the capsule was made with model {recorded.get('id')!r} (weights {str(recorded.get('weights_sha256'))[:12]}…); "
            f"this app serves {handle.name!r} (weights {here[:12]}…): start it with that model to replay"
        )


def recorded_adapter(document: dict) -> str | None:
    recorded = document.get("adapter")
    if not recorded:
        return None
    from pipelines.engine import adapters

    name = recorded.get("name")
    if not isinstance(name, str) or not adapters.exists(name):
        raise CapsuleError(f"the capsule used adapter {name!r}, which this app does not have")
    if capsules.adapter_facts(name) != recorded:
        raise CapsuleError(f"adapter {name!r} has changed since the capsule was made (its files' SHA-256 differs)")
    return name


def _params(inputs: dict) -> Any:
    from pipelines.engine.sampling import SamplingParams

    sampler = inputs.get("sampler")
    if not isinstance(sampler, dict) or not isinstance(sampler.get("params"), dict):
        raise CapsuleError("the capsule has no sampler settings")
    return SamplingParams.from_dict(sampler["params"])


def _ids(inputs: dict, field: str = "prompt_ids") -> list[int]:
    ids = inputs.get(field)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise CapsuleError(f"the capsule's {field} is not a list of token ids")
    return ids


def _same_tokens(recorded: list[int], now: list[int], what: str) -> None:
    if recorded != now:
        raise CapsuleError(
            f"the {what} no longer gives the recorded prompt tokens ({len(now)} tokens now, {len(recorded)} recorded): "
            "the tokenizer or chat template changed"
        )


def _why_it_may_differ(document: dict, handle: Any, engine: str) -> list[str]:
    """What differs between the capsule's run and this one that can change a float sum."""
    reasons = []
    then, now = document["machine"], capsules.machine()
    if then.get("cpu_kind") != now["cpu_kind"]:
        reasons.append(f"it was made on a {then.get('cpu_kind')} CPU and replayed on {now['cpu_kind']}")
    if then.get("threads") != now["threads"]:
        reasons.append(f"it ran on {then.get('threads')} threads, this replay on {now['threads']}")
    if document.get("engine") != engine:
        reasons.append(f"it was decoded by {document.get('engine')}, this replay by {engine}")
    if "openai" in (document.get("engine"), engine):
        reasons.append("a remote server samples with its own generator: its seeds are not the playground's")
    model = capsules.model_facts(handle)
    if document["model"].get("dtype") not in (None, model.get("dtype")):
        reasons.append(f"the model ran in {document['model'].get('dtype')}, here in {model['dtype']}")
    return reasons


def _generate(handle: Any, document: dict) -> tuple[dict, str]:
    from pipelines.engine import generation

    inputs = document["inputs"]
    prompt_ids = _ids(inputs)
    if isinstance(inputs.get("prompt"), str):
        _same_tokens(prompt_ids, generation.encode(handle, inputs["prompt"]), "prompt's text")
    completion = generation.generate(handle, prompt_ids, _params(inputs), adapter=recorded_adapter(document))
    return record.completion_result(completion), completion.engine


def _comparison(handle: Any, document: dict) -> tuple[dict, str]:
    """Both rows decoded again in one batch, each with its own settings and seed."""
    from pipelines.engine import generation

    inputs = document["inputs"]
    prompt_ids = _ids(inputs)
    if isinstance(inputs.get("prompt"), str):
        _same_tokens(prompt_ids, generation.encode(handle, inputs["prompt"]), "prompt's text")
    samplers = inputs.get("samplers")
    if not isinstance(samplers, list) or len(samplers) != 2:
        raise CapsuleError("the capsule's samplers are not the two settings of a comparison")
    params = [_params({"sampler": sampler}) for sampler in samplers]
    adapter = recorded_adapter(document)
    *_, rows = generation.stream_batch(handle, [prompt_ids, prompt_ids], params, adapter=adapter)
    return {"a": record.completion_result(rows[0]), "b": record.completion_result(rows[1])}, rows[0].engine


def _chat(handle: Any, document: dict) -> tuple[dict, str]:
    from pipelines.engine import chat, generation, messages

    inputs = document["inputs"]
    if document.get("chat_template_sha256") != capsules.template_sha256(handle.tokenizer):
        raise CapsuleError("the model's chat template has changed since the capsule was made")
    params = _params(inputs)
    conversation = messages.normalise(inputs.get("messages") or [])
    prompt = chat.build_prompt(
        handle, conversation, system_prompt=inputs.get("system_prompt"), max_new_tokens=params.max_new_tokens
    )
    _same_tokens(_ids(inputs), list(prompt.ids), "conversation")
    completion = generation.generate(handle, prompt.ids, params, adapter=recorded_adapter(document))
    return record.completion_result(completion), completion.engine


def _rag(handle: Any, document: dict) -> tuple[dict, str]:
    from pipelines.engine import generation
    from pipelines.rag import retrieval

    inputs = document["inputs"]
    search = retrieval.SearchSpec(**inputs.get("retrieval", {}))
    hits = retrieval.search(inputs["collection"], inputs["question"], k=search.k, mode=search.mode)
    found = [{"chunk_id": h.chunk.id, "text": h.chunk.text} for h in hits]
    recorded = [{"chunk_id": p.get("chunk_id"), "text": p.get("text")} for p in inputs.get("passages", [])]
    if found != recorded:
        raise CapsuleError(
            f"collection {inputs['collection']!r} now gives other passages for this question "
            "(its documents were added, removed or re-indexed since the capsule was made)"
        )
    result: dict[str, Any] = {"chunk_ids": [h.chunk.id for h in hits]}
    if "prompt_ids" not in inputs:
        return result, "retrieval only"
    adapter, params = recorded_adapter(document), _params(inputs)
    if not inputs.get("with_baseline"):
        completion = generation.generate(handle, _ids(inputs), params, adapter=adapter)
        return result | record.completion_result(completion), completion.engine
    # decoded in one batch beside the answer without retrieval, as the RAG tab does: the same batch again
    from pipelines.engine import chat

    plain = chat.build_prompt(
        handle, [chat.Message("user", str(inputs["question"]).strip())], max_new_tokens=params.max_new_tokens
    )
    *_, rows = generation.stream_batch(handle, [_ids(inputs), list(plain.ids)], [params] * 2, adapter=adapter)
    return result | record.completion_result(rows[0]), rows[0].engine


def _reasoning(handle: Any, document: dict) -> tuple[dict, str]:
    from pipelines.engine import generation
    from pipelines.reasoning import solve, strategies

    inputs = document["inputs"]
    adapter = recorded_adapter(document)
    keys = strategies.parse_keys(",".join(inputs.get("strategies") or []))
    prompts = inputs.get("prompts") if isinstance(inputs.get("prompts"), dict) else {}
    # the prompts as they were (edited in the tab, or the bundled ones then); older capsules name only the keys
    chosen = [strategies.parse(key, prompts[key]) if key in prompts else strategies.load(key) for key in keys]
    results = solve.solve(
        handle,
        inputs["question"],
        chosen,
        _params(inputs),
        samples=int(inputs.get("samples") or 1),
        token_cap=inputs.get("token_cap"),
        adapter=adapter,
    )
    return record.strategy_results(results), generation.engine_for(handle, adapter).name


def refuse_changed_file(path: Any, sha256: Any, what: str) -> None:
    """Refused before anything runs: a file a capsule's result was made from, gone or changed since."""
    from pathlib import Path

    path = Path(str(path))
    if not path.is_file():
        raise CapsuleError(f"{what} {str(path)!r} is not here")
    if capsules.sha256_of(path) != sha256:
        raise CapsuleError(f"{what} {path.name} has changed since the capsule was made")


def refuse_changed_reward_model(name: Any, sha256: Any) -> None:
    if record.reward_model_sha256(str(name)) != sha256:
        raise CapsuleError(f"reward model {name!r} has changed since the capsule was made")


def _job(handle: Any, document: dict) -> tuple[dict, str]:
    """Train again from the same spec and data under `<name>-replay`, and compare the weights' bytes."""

    from pipelines.store import jobs

    inputs = document["inputs"]
    kind, spec = inputs.get("job"), dict(inputs.get("spec") or {})
    if kind not in jobs.KINDS or not spec.get("out"):
        raise CapsuleError(f"the capsule's job kind {kind!r} or its spec is not one this app runs")
    for item in inputs.get("data") or []:
        if "name" in item:  # a reward model, by name
            refuse_changed_reward_model(item["name"], item.get("sha256"))
            continue
        if item.get("path") is None:
            if item.get("source") == "the label store":
                raise CapsuleError(
                    "the job trained on the label store, which has changed as people labelled: export the pairs "
                    "to a file and train from it (--data) to make a capsule that can be replayed"
                )
            continue
        refuse_changed_file(item["path"], item.get("sha256"), f"the job's {item.get('field')} file")
    spec["out"] = f"{spec['out']}-replay"
    if "overwrite" in spec:
        spec["overwrite"] = True
    job = jobs.run_foreground(kind, spec["out"], spec, echo=False)
    if job.status != jobs.SUCCEEDED:
        raise CapsuleError(f"the replayed {kind} job {job.status}: {job.message}")
    return {"weights_sha256": record.outputs_sha256(job.result), "job_id": job.id}, "trl"


REPLAYERS = {
    "generate": _generate,
    "comparison": _comparison,
    "chat": _chat,
    "rag": _rag,
    "reasoning": _reasoning,
    "job": _job,
}


Replayer = Callable[[Any, dict], tuple[dict, str]]


def replay(document: dict, replayers: dict[str, Replayer] | None = None) -> dict[str, Any]:
    """{"kind", "match", "reason"?, "original", "replayed"}: the result made again from a checked capsule.

    `replayers` adds kinds made above this wing (the CLI replays its own "command" capsules). What a
    result measures rather than computes (timings) is left out of the comparison and named in
    "not_compared"."""
    from pipelines.engine import models

    document = capsules.verified(document)
    chosen = {**REPLAYERS, **(replayers or {})}
    if document["kind"] not in chosen:
        raise CapsuleError(f"a {document['kind']} capsule is replayed by `python -m pipelines replay`")
    used_the_model = document["kind"] != "command" or document["model"].get("weights_sha256") is not None
    handle = models.get_handle() if used_the_model else None
    if handle is not None:
        _refuse_other_model(document, handle)
    replayed, engine = chosen[document["kind"]](handle, document)
    original = document["result"]
    (left, skipped), (right, _) = record.comparable(original), record.comparable(replayed)
    match = all(right.get(key) == value for key, value in left.items() if key in right)
    answer: dict[str, Any] = {"kind": document["kind"], "match": match, "original": original, "replayed": replayed}
    if skipped:
        answer["not_compared"] = skipped
    differences = _why_it_may_differ(document, handle, engine)
    if not match:
        answer["reason"] = (
            "; ".join(differences)
            if differences
            else "the same model, settings, engine and machine kind gave another result: please report it"
        )
    elif differences:
        answer["note"] = "matched although " + "; ".join(differences)
    return answer
