"""Saved sampling presets: save the sidebar's settings under a name, load them back, share one as a file.

People coming from Open WebUI, text-generation-webui or LLaMA-Factory keep their favourite settings
(issue 42). Presets live in the person's own browser (gr.BrowserState), so a public Space keeps
nobody's on its disk; a preset file is the way to pass one on. A file is untrusted input: it is
small, JSON, one preset, and every value is checked by SamplingParams as any request is.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.access import visitor_keys
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.store.rows import loads

from .controls import PARAM_NAMES, SamplingControls, to_params
from .errors import UserError

KIND = "llm-playground/sampling-preset"
MAX_PRESETS = 50
MAX_FILE_BYTES = 64_000
NAME = re.compile(r"[\w][\w .\-]{0,63}")


def _check_name(name: str | None) -> str:
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise UserError("Name the preset: 1 to 64 letters, digits, spaces, dots, dashes or underscores.")
    return name


def _settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings as a preset keeps them, checked the way a request is (a refusal names the setting)."""
    return to_params(values).to_dict()


def save(presets: dict[str, Any] | None, name: str | None, *values: Any) -> tuple[dict[str, Any], Any, str]:
    """Keep the sidebar's settings under `name` (replacing a preset of that name)."""
    name = _check_name(name)
    kept = dict(presets or {})
    if name not in kept and len(kept) >= MAX_PRESETS:
        raise UserError(f"At most {MAX_PRESETS} presets: delete one first.")
    kept[name] = _settings(dict(zip(PARAM_NAMES, values, strict=False)))
    return kept, gr.update(choices=sorted(kept), value=name), f"Saved **{name}**."


def _checked(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Settings checked like any request: a preset kept by an older version, edited by hand or shared
    as a file may hold anything; the refusal says where it came from."""
    try:
        return SamplingParams.from_dict(settings).to_dict()
    except (InvalidParameter, TypeError) as error:
        raise UserError(f"{where}: {error}") from error


def load(presets: dict[str, Any] | None, name: str | None) -> list[Any]:
    """The sidebar's settings from a saved preset."""
    chosen = (presets or {}).get(name or "")
    if not isinstance(chosen, dict):
        raise UserError("Choose a saved preset.")
    return SamplingControls.updates_for(_checked(chosen, f"The preset {name!r} cannot be used"))


def delete(presets: dict[str, Any] | None, name: str | None) -> tuple[dict[str, Any], Any, str]:
    kept = dict(presets or {})
    if not name or kept.pop(name, None) is None:
        raise UserError("Choose a saved preset to delete.")
    return kept, gr.update(choices=sorted(kept), value=None), f"Deleted **{name}**."


def export(presets: dict[str, Any] | None, name: str | None) -> str:
    """One preset as a file to share."""
    chosen = (presets or {}).get(name or "")
    if not isinstance(chosen, dict):
        raise UserError("Choose a saved preset to download.")
    folder = Path(tempfile.mkdtemp(prefix="preset-"))
    path = folder / (re.sub(r"[^\w.-]+", "_", name or "preset") + ".json")
    path.write_text(json.dumps({"kind": KIND, "name": name, "settings": chosen}, indent=2), encoding="utf-8")
    return str(path)


def import_file(presets: dict[str, Any] | None, file: str | None) -> tuple[dict[str, Any], Any, str]:
    """A shared preset file into this browser's presets (checked like any request; a bad file changes nothing)."""
    if not file:
        raise UserError("Choose a preset file (.json).")
    path = Path(file)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise UserError(f"{path.name} is larger than a preset can be ({MAX_FILE_BYTES // 1000} KB).")
    data = loads(path.read_bytes(), max_depth=4, source=path.name)  # RowsError: not UTF-8, not JSON, too deep
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("settings"), dict):
        raise UserError(f"{path.name} is not a preset file (exported from this app's sidebar).")
    name = _check_name(str(data.get("name") or path.stem))
    settings = _checked(data["settings"], path.name)
    kept = dict(presets or {})
    if name not in kept and len(kept) >= MAX_PRESETS:
        raise UserError(f"At most {MAX_PRESETS} presets: delete one first.")
    kept[name] = settings
    return kept, gr.update(choices=sorted(kept), value=name), f"Added **{name}** from {path.name}: press Load."


def build(demo: gr.Blocks, sampling: SamplingControls) -> None:
    """The presets row under the sidebar's sampling settings."""
    stored = gr.BrowserState({}, storage_key="llm-playground-presets", secret=visitor_keys().derived("browser-state"))
    with gr.Accordion("My presets (saved in this browser)", open=False):
        with gr.Row():
            pick = gr.Dropdown([], label="Preset", scale=3, elem_id="preset-pick")
            load_button = gr.Button("Load", size="sm", scale=1, min_width=60)
        with gr.Row():
            name = gr.Textbox(label="Save the settings above as", placeholder="e.g. creative", scale=3, max_lines=1)
            save_button = gr.Button("Save", size="sm", scale=1, min_width=60)
        with gr.Row():
            download = gr.Button("Download", size="sm", min_width=60)
            upload = gr.UploadButton("Import file", file_types=[".json"], size="sm", min_width=60)
            remove = gr.Button("Delete", size="sm", min_width=60)
        note = gr.Markdown()
        shared = gr.File(label="Preset file", interactive=False, visible=False, height=60)
    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    save_button.click(save, [stored, name, *sampling.inputs], [stored, pick, note], **quiet)
    load_button.click(load, [stored, pick], sampling.inputs, **quiet)
    remove.click(delete, [stored, pick], [stored, pick, note], **quiet)
    download.click(export, [stored, pick], shared, **quiet).success(
        lambda: gr.update(visible=True), None, shared, **quiet
    )
    upload.upload(import_file, [stored, upload], [stored, pick, note], **quiet)
    demo.load(lambda kept: gr.update(choices=sorted(kept or {})), stored, pick, **quiet)
