"""What tests share beyond fixtures: paths, the tiny model, a launched app, small data files.

Tests import these from here, never from conftest.py or from another test file.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = Path(os.environ.get("PLAYGROUND_TEST_CACHE", ROOT / ".cache" / "test-data")).resolve()

# The Generate tab's sampling settings as its handlers receive them: greedy, 8 tokens.
SAMPLING_DEFAULTS = {
    "max_new_tokens": 8,
    "temperature": 0.0,
    "top_k": 0,
    "top_p": 1.0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "seed": -1,
    "stop": "",
}


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


def as_public_space(monkeypatch, *, anonymous_labels: bool = False) -> None:
    """What a Space with `hf_oauth: true` sets (and PLAYGROUND_ANONYMOUS_LABELS=1 when asked): sign-in is
    on and visitors who are not signed in are anonymous. gradio reads the OAuth settings at import, so its
    module is patched too, and it mounts its real OAuth routes (gradio[oauth])."""
    import gradio.oauth

    from pipelines import access, config

    space = {
        "OAUTH_CLIENT_ID": "space-client",
        "OAUTH_CLIENT_SECRET": "secret",
        "OAUTH_SCOPES": "openid profile",
        "OPENID_PROVIDER_URL": "https://huggingface.co",
    }
    for name, value in space.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setattr(gradio.oauth, name, value)
    monkeypatch.setattr(gradio.oauth, "get_space", lambda: "team/playground")
    if anonymous_labels:
        monkeypatch.setenv("PLAYGROUND_ANONYMOUS_LABELS", "1")
    access.reset_policy()
    config.reset_settings()


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


def write_sft_rows(path: Path, n: int = 24) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"prompt": f"What is {i} plus {i}?", "response": f"In short: {2 * i}."}) + "\n")
    return path


def two_response_items(count: int) -> list[str]:
    """`count` stored items, "Question i?" with responses "ai" and "bi": ids, in order (for vote bursts)."""
    from pipelines.labels import preferences

    return [
        preferences.create_item(
            [{"role": "user", "content": f"Question {i}?"}],
            [preferences.ResponseDraft(f"a{i}"), preferences.ResponseDraft(f"b{i}")],
        ).id
        for i in range(count)
    ]
