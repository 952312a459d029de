"""A generation saved as a replay capsule, and a capsule loaded back into the Generate tab's settings.

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
    path = Path(tempfile.mkdtemp(prefix="capsule-")) / "generation-capsule.json"
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def load_generation(file: str | None) -> list[Any]:
    """Prompt, sampling values and adapter from a capsule, and a note on whether Generate will match it."""
    if not file:
        raise UserError("Choose a capsule file (a .json saved here or written by --capsule).")
    document = capsules.read(file)
    if document["kind"] != "generate":
        raise UserError(
            f"This capsule is a {document['kind']} result: the Generate tab loads generations. "
            f"Replay it with `python -m pipelines replay {Path(file).name}`."
        )
    inputs = document["inputs"]
    sampler = inputs.get("sampler") if isinstance(inputs.get("sampler"), dict) else {}
    settings = SamplingParams.from_dict(sampler.get("params") or {}).to_dict()  # refused like any setting
    adapter = (document.get("adapter") or {}).get("name")
    notes = [
        f"Loaded a capsule of {document['created']}: press **Generate** to make it again (seed {settings['seed']})."
    ]
    if document["model"].get("weights_sha256") != capsules.weights_sha256(models.get_handle()):
        notes.append(f"It was made with **other weights** ({document['model'].get('id')}): the text will differ.")
    if adapter and not adapters.exists(adapter):
        notes.append(f"Its adapter **{adapter}** is not here: the base model is selected instead.")
        adapter = None
    prompt = inputs.get("prompt") if isinstance(inputs.get("prompt"), str) else ""
    return [
        prompt,
        *SamplingControls.updates_for(settings),
        gr.update(value=adapter or adapters.BASE_CHOICE),
        "  \n".join(notes),
    ]


def build() -> tuple[gr.Button, gr.UploadButton, gr.File, gr.Markdown]:
    """The row: save the shown generation, load one (laid out where it is called)."""
    with gr.Accordion("Replay capsule: save this result, or load one", open=False):
        gr.Markdown(
            "<span class='muted'>A capsule records how the result was made: the model's weights hash, the adapter, "
            "the engine, every sampling value in the order applied, the seed, the prompt's tokens. Load it here to "
            "set everything back, or replay it with `python -m pipelines replay FILE`.</span>"
        )
        with gr.Row():
            save = gr.Button("Save capsule", size="sm", elem_id="capsule-save")
            load = gr.UploadButton("Load capsule", file_types=[".json"], size="sm", elem_id="capsule-load")
        saved = gr.File(label="Capsule (JSON)", interactive=False, height=70)
        note = gr.Markdown(elem_id="capsule-note")
    return save, load, saved, note
