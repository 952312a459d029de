"""Shared fixtures (helpers that tests import live in tests/helpers.py).

Most tests use a tiny randomly initialised Llama with SmolLM2's real tokenizer, built in-process
(milliseconds per forward). Integration tests use the real bundled model; its GGUF is converted
once into a cache under `.cache/test-data` that later runs reuse.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers import MODEL_CACHE, build_tiny_model, launched_app  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach for the Hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty data directory; nothing leaks into ./data."""
    from pipelines import access, config

    target = tmp_path / "data"
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(target))
    # a developer's own deployment settings must not change what the tests see
    for name in (
        "PLAYGROUND_AUTH",
        "PLAYGROUND_ADMINS",
        "OAUTH_CLIENT_ID",
        "PLAYGROUND_ENGINE",
        "PLAYGROUND_FAST",
        "PLAYGROUND_OPENAI_BASE_URL",
        "PLAYGROUND_OPENAI_API_KEY",
        "PLAYGROUND_OPENAI_MODEL",
        "PLAYGROUND_OPENAI_SERVER",
        "PLAYGROUND_ANONYMOUS_LABELS",
        "PLAYGROUND_MCP",
        "GRADIO_MCP_SERVER",
        "PLAYGROUND_SECRET_KEY",
        "PLAYGROUND_PROXY_HOPS",
        "PLAYGROUND_PHONE_REGION",
        "SPACE_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    # Training runs the same plan on every host; tests/unit/test_precision_plans.py runs each plan
    # (a CPU with native bf16 would otherwise train everything in bf16, one without never would).
    monkeypatch.setenv("PLAYGROUND_TRAIN_PRECISION", "fp32")
    config.reset_settings()
    access.reset_policy()
    yield target
    config.reset_settings()
    access.reset_policy()


@pytest.fixture(scope="session")
def bundled_dir() -> Path:
    """The bundled model converted to safetensors (converted on the first test run only)."""
    from pipelines.config import Settings
    from pipelines.engine import models

    return models.bundled_model_dir(Settings(data_dir=MODEL_CACHE))


@pytest.fixture(scope="session")
def tokenizer(bundled_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_dir)


@pytest.fixture(scope="session")
def tiny_handle(tokenizer):
    from pipelines.engine import models

    return models.wrap(build_tiny_model(tokenizer), tokenizer, name="tiny-llama", source="in-process")


@pytest.fixture
def use_tiny(tiny_handle):
    """Install the tiny model as the process-wide model for code that calls get_handle()."""
    from pipelines.engine import models

    models.set_handle(tiny_handle)
    yield tiny_handle
    models.set_handle(None)


@pytest.fixture(scope="session")
def real_handle(bundled_dir: Path):
    from pipelines.engine import models

    return models.load_handle(str(bundled_dir))


@pytest.fixture
def app_url(use_tiny):
    """The full app, on the tiny model, launched on a free local port."""
    with launched_app(use_tiny) as url:
        yield url


@pytest.fixture
def fresh_tiny_handle(tokenizer):
    """A tiny model of its own: attaching adapters wraps the model, so tests that do must not share it."""
    from pipelines.engine import models

    handle = models.wrap(build_tiny_model(tokenizer), tokenizer, name="tiny-llama", source="in-process")
    models.set_handle(handle)
    yield handle
    models.set_handle(None)


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer, tmp_path_factory) -> Path:
    """The tiny model saved as a model directory, for job processes that load by path."""
    path = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_model_env(tiny_model_dir, monkeypatch):
    """PLAYGROUND_MODEL points at the tiny model (inherited by job worker processes)."""
    from pipelines import config

    monkeypatch.setenv("PLAYGROUND_MODEL", str(tiny_model_dir))
    config.reset_settings()
    return tiny_model_dir


@pytest.fixture(scope="session")
def postgres_admin_url():
    """A throwaway PostgreSQL server for the session (tests/postgres.py); skips without one."""
    from tests import postgres

    with postgres.server() as url:
        if url is None:
            pytest.skip(f"PostgreSQL tests need a server: {postgres.INSTALL}")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_database(request, data_dir, monkeypatch):
    """The store's tests run on both databases: SQLite in the data directory, and a fresh
    database on the PostgreSQL server (PLAYGROUND_DATABASE_URL, inherited by spawned processes)."""
    from tests import postgres

    with postgres.database_for(request, monkeypatch) as kind:
        yield kind
