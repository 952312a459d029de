"""Ready-made results shipped with the project, so a lesson never waits 20 minutes for training.

Each one was made by the project's own pipelines from its bundled data on the bundled model, and
lives under `assets/bundled/<kind>/<name>/` in exactly the format a trained one has in the data
directory (PEFT files + meta.json), so every picker, the scorer and the CLI use it unchanged. Its
meta.json adds a `bundled` block: the command that reproduces it and the figures it was measured
at (docs/teaching.md quotes them; a test recomputes them).

They are read-only: their names are reserved (training under one is refused, instead of one
shadowing the other), and they are offered only where they fit: the adapters only while the
bundled model is the configured base model (they are its weights' deltas), the reward model
wherever the bundled model is installed (it loads its own base).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.config import BUNDLED_MODEL, Settings, get_settings
from pipelines.errors import InvalidParameter

ROOT = Path(__file__).resolve().parents[2] / "assets" / "bundled"
ADAPTERS = ROOT / "adapters"
REWARD_MODELS = ROOT / "reward_models"
STUDENTS = ROOT / "students"
LENSES = ROOT / "lenses"  # tuned-lens translators (pipelines/inside/tuned_lens.py)
LABEL = "(bundled)"


def names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "meta.json").is_file())


def reserved(name: str) -> bool:
    """A name that belongs to a bundled result, whatever kind it is."""
    return any(name in names(root) for root in (ADAPTERS, REWARD_MODELS, STUDENTS))


def is_bundled(path: Path) -> bool:
    return ROOT in Path(path).resolve().parents


def _bundled_model_installed() -> bool:
    from pipelines.engine.model_source import bundled_gguf_path

    return bundled_gguf_path() is not None


def adapter_dirs(settings: Settings | None = None) -> list[Path]:
    """Bundled adapters, when the configured base model is the one they were trained on."""
    from pipelines.engine.model_source import configured_model_id

    if configured_model_id(settings or get_settings()) != BUNDLED_MODEL or not _bundled_model_installed():
        return []
    return [ADAPTERS / name for name in names(ADAPTERS) if (ADAPTERS / name / "adapter_config.json").is_file()]


def student_dirs(settings: Settings | None = None) -> list[Path]:
    """Bundled distilled students: rebuilt from the bundled model's weights, so offered only with it."""
    from pipelines.engine.model_source import configured_model_id

    if configured_model_id(settings or get_settings()) != BUNDLED_MODEL or not _bundled_model_installed():
        return []
    return [STUDENTS / name for name in names(STUDENTS) if (STUDENTS / name / "student.json").is_file()]


def reward_model_dirs() -> list[Path]:
    """Bundled reward models: each loads the bundled model as its own base, whatever the app serves."""
    if not _bundled_model_installed():
        return []
    return [REWARD_MODELS / name for name in names(REWARD_MODELS)]


def find(root: Path, name: str, settings: Settings | None = None) -> Path | None:
    """The bundled directory of that name, if it is offered here."""
    offered = adapter_dirs(settings) if root == ADAPTERS else reward_model_dirs()
    return next((path for path in offered if path.name == name), None)


def recipe(path: Path) -> dict[str, Any]:
    """The `bundled` block of a bundled result: {"reproduce": command, "figures": {...}}."""
    meta = json.loads((Path(path) / "meta.json").read_text(encoding="utf-8"))
    return dict(meta.get("bundled") or {})


def catalogue(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every bundled result with its kind, how to reproduce it and its recorded figures."""
    found = []
    for kind, root in (("adapter", ADAPTERS), ("reward_model", REWARD_MODELS), ("student", STUDENTS), ("lens", LENSES)):
        for name in names(root):
            found.append({"name": name, "kind": kind, "path": str(root / name), **recipe(root / name)})
    return found


def locate(name: str) -> Path:
    """A bundled result's directory by name, whether or not it is offered with this configuration."""
    roots = (ADAPTERS, REWARD_MODELS, STUDENTS, LENSES)
    for root in roots:
        if (root / name / "meta.json").is_file():
            return root / name
    raise InvalidParameter(
        "name", f"no bundled result named {name!r}; bundled: {', '.join(n for root in roots for n in names(root))}"
    )
