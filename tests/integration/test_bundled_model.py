"""The real bundled SmolLM2-135M-Instruct: conversion, knowledge, CLI in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelines.engine import generation
from pipelines.engine.sampling import SamplingParams
from tests.helpers import MODEL_CACHE, ROOT

pytestmark = pytest.mark.integration


def test_converted_model_knows_a_fact(real_handle):
    assert real_handle.name == "SmolLM2-135M-Instruct" or real_handle.context_window == 8192
    c = generation.generate(real_handle, "The capital of France is", SamplingParams(temperature=0, max_new_tokens=5))
    assert "Paris" in c.text


def test_chat_template_survives_conversion(real_handle):
    rendered = real_handle.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert "<|im_start|>user\nHi<|im_end|>" in rendered and rendered.endswith("<|im_start|>assistant\n")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLAYGROUND_DATA_DIR": str(MODEL_CACHE)}
    env.pop("PLAYGROUND_MODEL", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_json_is_deterministic_on_the_real_model(bundled_dir):
    args = (
        "generate",
        "--prompt",
        "Write a haiku about the sea.",
        "--temperature",
        "0.8",
        "--seed",
        "7",
        "--max-new-tokens",
        "24",
        "--json",
    )
    first, second = _cli(*args), _cli(*args)
    assert first.returncode == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["text"] == b["text"] and len(a["tokens"]) <= 24
    assert a["finish_reason"] in {"length", "stop", "eos"} and a["tokens_per_second"] > 0


def test_cli_refuses_a_prompt_longer_than_the_window(bundled_dir):
    result = _cli("generate", "--prompt", "lorem ipsum " * 5000, "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert "prompt" in result.stderr and "8,192" in result.stderr and "Traceback" not in result.stderr


def test_six_thousand_word_history_is_answered(real_handle):
    from pipelines.engine import chat

    history = []
    for i in range(80):
        history.append({"role": "user", "content": f"Note {i}: " + "the river runs past the old mill " * 7})
        history.append({"role": "assistant", "content": "Noted. " + "I will remember that detail " * 7})
    history.append({"role": "user", "content": "What is the capital of France?"})
    assert sum(len(m["content"].split()) for m in history) >= 6000
    # A large reply budget makes the trim keep ~4k tokens (half the window): the same code path as
    # a full window at a quarter of the attention cost on a 2-core CI machine.
    params = SamplingParams(temperature=0, max_new_tokens=4000, stop=(".", "\n"))
    completion, prompt = chat.reply(real_handle, chat.normalise(history), params)
    assert completion.text.strip() and prompt.prompt_tokens <= 8192 - 4000
    assert prompt.dropped_turns > 0 and prompt.messages[-1].content == "What is the capital of France?"
