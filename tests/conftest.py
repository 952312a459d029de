"""Shared fixtures.

Most tests use a tiny randomly initialised Llama with SmolLM2's real tokenizer, built in-process
(milliseconds per forward). Integration tests use the real bundled model; its GGUF is converted
once into a cache under `.cache/test-data` that later runs reuse.
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach for the Hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MODEL_CACHE = Path(os.environ.get("PLAYGROUND_TEST_CACHE", ROOT / ".cache" / "test-data")).resolve()


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty data directory; nothing leaks into ./data."""
    from pipelines import access, config

    target = tmp_path / "data"
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(target))
    # a developer's own deployment settings must not change what the tests see
    for name in ("PLAYGROUND_AUTH", "PLAYGROUND_ADMINS", "OAUTH_CLIENT_ID", "PLAYGROUND_ENGINE", "PLAYGROUND_FAST"):
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
    from pipelines import models
    from pipelines.config import Settings

    return models.bundled_model_dir(Settings(data_dir=MODEL_CACHE))


@pytest.fixture(scope="session")
def tokenizer(bundled_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_dir)


HEAD_SCALE = 20


def build_tiny_model(tokenizer, *, max_positions: int = 512, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    # Random init gives near-uniform next-token distributions (~15.6 bits); a larger output head
    # makes them peaked like a real model's, so greedy output varies and top-k/top-p matter.
    with torch.no_grad():
        model.lm_head.weight.mul_(HEAD_SCALE)
    return model


@pytest.fixture(scope="session")
def tiny_handle(tokenizer):
    from pipelines import models

    return models.wrap(build_tiny_model(tokenizer), tokenizer, name="tiny-llama", source="in-process")


@pytest.fixture
def use_tiny(tiny_handle):
    """Install the tiny model as the process-wide model for code that calls get_handle()."""
    from pipelines import models

    models.set_handle(tiny_handle)
    yield tiny_handle
    models.set_handle(None)


@pytest.fixture(scope="session")
def real_handle(bundled_dir: Path):
    from pipelines import models

    return models.load_handle(str(bundled_dir))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched_app(handle):
    """The full app on `handle`, launched on a free local port; yields its URL."""
    import app as app_module

    demo = app_module.build_app(handle.name)
    demo.queue(default_concurrency_limit=4)
    kwargs = app_module.launch_kwargs()
    kwargs.update(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    _, url, _ = demo.launch(**kwargs)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture
def app_url(use_tiny):
    """The full app, on the tiny model, launched on a free local port."""
    with launched_app(use_tiny) as url:
        yield url


def make_lora_adapter(tokenizer, adapters_root: Path, name: str, *, seed: int = 1) -> Path:
    """A small random LoRA adapter for the tiny model, saved in standard PEFT format."""
    import torch
    from peft import LoraConfig, get_peft_model

    base = build_tiny_model(tokenizer)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.5)
    out = adapters_root / name
    peft_model.save_pretrained(out)
    (out / "meta.json").write_text('{"base_model": "tiny-llama", "kind": "lora"}')
    return out


@pytest.fixture
def fresh_tiny_handle(tokenizer):
    """A tiny model of its own: attaching adapters wraps the model, so tests that do must not share it."""
    from pipelines import models

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


def write_sft_rows(path: Path, n: int = 24) -> Path:
    import json

    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"prompt": f"What is {i} plus {i}?", "response": f"In short: {2 * i}."}) + "\n")
    return path
