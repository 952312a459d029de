"""Results saved as replay capsules, and capsules loaded back into a tab's settings (Generate, Chat, RAG).

The capsule is the CLI's (`pipelines/replay`): the same file replays with `python -m pipelines replay`,
and loading one here puts back its prompt, every sampling value (the seed it was given included) and
its adapter, so Generate makes the same text again on the same engine and machine kind. A capsule
made with other weights, or an adapter this app lacks, is loaded with the reason it will not match.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.engine import adapters, models
from pipelines.engine.sampling import SamplingParams
from pipelines.replay import capsules, record

from .controls import SamplingControls
from .errors import UserError


def saved(document: dict[str, Any] | None, what: str) -> str:
    """A capsule the tab made at the end of its last run, as a file to download."""
    if not isinstance(document, dict) or "kind" not in document:
        raise UserError(f"Nothing to save yet: a capsule records a finished {what}.")
    path = Path(tempfile.mkdtemp(prefix="capsule-")) / f"{document['kind']}-capsule.json"
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def save_generation(state: dict[str, Any] | None) -> str:
    """The shown generation as a capsule file to download."""
    state = state or {}
    if not state.get("tokens") or not isinstance(state.get("params"), dict):
        raise UserError("Generate something first: a capsule records a finished generation.")
    settings = dict(state["params"])
    if isinstance(settings.get("seed"), str) and settings["seed"].isdigit():  # kept as text by the browser
        settings["seed"] = int(settings["seed"])
    result = {
        "text": state.get("text", ""),
        "token_ids": [t["id"] for t in state["tokens"]],
        "finish_reason": state.get("finish_reason"),
    }
    document = record.generated(
        models.get_handle(),
        state.get("prompt", ""),
        state.get("prompt_ids") or [],
        SamplingParams.from_dict(settings),
        result,
        engine=str(state.get("engine") or "torch"),
        adapter=state.get("adapter"),
    )
    return saved(document, "generation")


def opened(file: str | None, kind: str, tab: str) -> dict[str, Any]:
    """A capsule read back for `tab`, which loads capsules of `kind` (any other kind is refused with where it goes)."""
    if not file:
        raise UserError("Choose a capsule file (a .json saved here or written by --capsule).")
    document = capsules.read(file)
    if document["kind"] != kind:
        raise UserError(
            f"This capsule is a {document['kind']} result: the {tab} tab loads {kind} capsules. "
            f"Replay it with `python -m pipelines replay {Path(file).name}`."
        )
    return document


def settings_of(document: dict[str, Any], press: str) -> tuple[list[Any], list[str]]:
    """Updates for the shared sampling controls and the adapter picker, and notes on whether pressing
    `press` will make the same result again (other weights, a missing adapter)."""
    settings = _settings(document["inputs"].get("sampler"))
    adapter = (document.get("adapter") or {}).get("name")
    notes = [
        f"Loaded a capsule of {document['created']}: press **{press}** to make it again (seed {settings['seed']})."
    ]
    if document["model"].get("weights_sha256") != capsules.weights_sha256(models.get_handle()):
        notes.append(f"It was made with **other weights** ({document['model'].get('id')}): the result will differ.")
    if adapter and not adapters.exists(adapter):
        notes.append(f"Its adapter **{adapter}** is not here: the base model is selected instead.")
        adapter = None
    return [*SamplingControls.updates_for(settings), gr.update(value=adapter or adapters.BASE_CHOICE)], notes


def _settings(sampler: Any) -> dict[str, Any]:
    """A recorded sampler's values, checked as any setting is (a bad value is refused naming it)."""
    values = sampler.get("params") if isinstance(sampler, dict) else None
    return SamplingParams.from_dict(values if isinstance(values, dict) else {}).to_dict()


def load_comparison(file: str | None) -> list[Any]:
    """A comparison's prompt, A's settings (the sidebar), B's, and the adapter: Compare then makes both again."""
    document = opened(file, "comparison", "Generate tab's Compare")
    samplers = document["inputs"].get("samplers")
    if not isinstance(samplers, list) or len(samplers) != 2:
        raise UserError("This comparison capsule does not hold two settings.")
    as_one = {**document, "inputs": {**document["inputs"], "sampler": samplers[0]}}
    settings_a, notes = settings_of(as_one, "Compare")
    settings_b = _settings(samplers[1])
    notes[0] += f" B's seed: {settings_b['seed']}."
    prompt = document["inputs"].get("prompt")
    adapter = settings_a.pop()
    return [
        prompt if isinstance(prompt, str) else "",
        *settings_a,
        *SamplingControls.updates_for(settings_b),
        adapter,
        "  \n".join(notes),
    ]


def load_generation(file: str | None) -> list[Any]:
    """Prompt, sampling values and adapter from a capsule, and a note on whether Generate will match it."""
    document = opened(file, "generate", "Generate")
    settings, notes = settings_of(document, "Generate")
    prompt = document["inputs"].get("prompt")
    return [prompt if isinstance(prompt, str) else "", *settings, "  \n".join(notes)]


def build(prefix: str = "capsule") -> tuple[gr.Button, gr.UploadButton, gr.File, gr.Markdown]:
    """The row: save the shown result, load one (laid out where it is called; `prefix` names its elements)."""
    with gr.Accordion("Replay capsule: save this result, or load one", open=False):
        gr.Markdown(
            "<span class='muted'>A capsule records how the result was made: the model's weights hash, the adapter, "
            "the engine, every sampling value in the order applied, the seed, the prompt's tokens. Load it here to "
            "set everything back, or replay it with `python -m pipelines replay FILE`.</span>"
        )
        with gr.Row():
            save = gr.Button("Save capsule", size="sm", elem_id=f"{prefix}-save")
            load = gr.UploadButton("Load capsule", file_types=[".json"], size="sm", elem_id=f"{prefix}-load")
        saved = gr.File(label="Capsule (JSON)", interactive=False, height=70)
        note = gr.Markdown(elem_id=f"{prefix}-note")
    return save, load, saved, note
