"""Trained PEFT adapters on disk: `<data>/adapters/<name>/` in standard PEFT format + meta.json.

Fine-tuning, DPO and RLOO all write here; every model picker lists what is here, then the
project's bundled adapters (`bundled`). Names are checked so an adapter name can never address a
path outside the adapters directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import Settings, get_settings
from pipelines.engine import bundled
from pipelines.errors import PlaygroundError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BASE_CHOICE = "(base model)"


class AdapterError(PlaygroundError, ValueError):
    """An adapter name is invalid or the adapter is missing/unreadable."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: Path
    peft_type: str
    base_model: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_bundled(self) -> bool:
        return bundled.is_bundled(self.path)

    @property
    def label(self) -> str:
        kind = self.meta.get("kind") or self.peft_type.lower()
        return f"{self.name} ({kind}) {bundled.LABEL}" if self.is_bundled else f"{self.name} ({kind})"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise AdapterError(
            f"invalid adapter name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def adapters_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "adapters"


def adapter_path(name: str, settings: Settings | None = None) -> Path:
    return adapters_dir(settings) / check_name(name)


def read(path: Path) -> AdapterInfo:
    config_file = path / "adapter_config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AdapterError(f"adapter {path.name!r} is unreadable: {error}") from error
    meta_file = path / "meta.json"
    meta: dict[str, Any] = {}
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except ValueError:
            meta = {}
    return AdapterInfo(
        name=path.name,
        path=path,
        peft_type=str(config.get("peft_type", "unknown")),
        base_model=str(meta.get("base_model") or config.get("base_model_name_or_path") or ""),
        meta=meta,
    )


def list_adapters(settings: Settings | None = None) -> list[AdapterInfo]:
    """Every readable adapter, newest first, then the bundled ones. Half-written ones are skipped."""
    root = adapters_dir(settings)
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        if path.is_dir() and NAME_PATTERN.match(path.name) and (path / "adapter_config.json").is_file():
            try:
                found.append(read(path))
            except AdapterError:
                continue
    found.sort(key=lambda a: a.path.stat().st_mtime, reverse=True)
    made = {a.name for a in found}
    return found + [read(path) for path in bundled.adapter_dirs(settings) if path.name not in made]


def named_results(root: Path) -> list[dict[str, Any]]:
    """{"name", **meta.json} of every well-named directory under `root` whose meta.json reads
    (trained reward models, classifiers); half-written or unreadable ones are skipped."""
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        meta_file = path / "meta.json"
        if path.is_dir() and NAME_PATTERN.match(path.name) and meta_file.is_file():
            try:
                found.append({"name": path.name, **json.loads(meta_file.read_text(encoding="utf-8"))})
            except (OSError, ValueError):
                continue
    return found


def choices(settings: Settings | None = None) -> list[tuple[str, str]]:
    """(label, name) of every adapter, as the pickers show them ("(bundled)" marks the shipped ones)."""
    return [(a.label, a.name) for a in list_adapters(settings)]


def exists(name: str, settings: Settings | None = None) -> bool:
    """Whether an adapter of this name can be used here (made here, or bundled for this model)."""
    return any(a.name == name for a in list_adapters(settings))


def get(name: str, settings: Settings | None = None) -> AdapterInfo:
    """The adapter a name refers to: one made here, else the bundled one of that name."""
    path = adapter_path(name, settings)
    if (path / "adapter_config.json").is_file():
        return read(path)
    shipped = bundled.find(bundled.ADAPTERS, name, settings)
    if shipped is None:
        raise AdapterError(f"no adapter named {name!r} in {adapters_dir(settings)}")
    return read(shipped)


def version(path: Path) -> float:
    """Changes when the adapter's weights are rewritten (e.g. retrained under the same name)."""
    stamps = [p.stat().st_mtime_ns for p in path.glob("adapter_model.*")]
    return max(stamps, default=0)


def exports_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "exports"


def export_zip(name: str, settings: Settings | None = None) -> Path:
    """The adapter directory as a zip file (PEFT format + meta.json), for download."""
    import shutil

    info = get(name, settings)
    out_dir = exports_dir(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_base = out_dir / f".tmp-{name}"
    archive = Path(shutil.make_archive(str(tmp_base), "zip", root_dir=info.path.parent, base_dir=info.name))
    final = out_dir / f"{name}.zip"
    archive.replace(final)
    return final


def merge(name: str, settings: Settings | None = None) -> Path:
    """Fold a LoRA adapter into its base model and save a standalone model directory.

    W' = W + (alpha / r) * B A for every adapted layer: the result loads with plain
    `AutoModelForCausalLM.from_pretrained` and needs no peft at inference time.
    """
    import os
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.engine import model_source

    info = get(name, settings)
    if info.peft_type != "LORA":
        raise AdapterError(f"only LoRA adapters can be merged into the base model ({name!r} is {info.peft_type})")
    model_id = info.meta.get("base_model_source") or model_source.configured_model_id(settings or get_settings())
    source, _ = model_source.resolve_source(model_id, settings)
    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(info.path)).merge_and_unload()
    target = exports_dir(settings) / f"{name}-merged"
    tmp = exports_dir(settings) / f".tmp-{name}-merged-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
