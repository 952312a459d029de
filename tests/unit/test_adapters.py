"""Adapters on disk, attached to the one base model and switched per request."""

from __future__ import annotations

import os
import time

import pytest

from pipelines.engine import adapters, chat, generation, models
from pipelines.engine.sampling import SamplingParams
from tests.helpers import make_lora_adapter

GREEDY = SamplingParams(temperature=0, max_new_tokens=10)


def test_adapter_switch_changes_output_and_base_is_restored(fresh_tiny_handle, tokenizer, data_dir):
    handle = fresh_tiny_handle
    base_model = handle.base_model
    before = generation.generate(handle, "Hello there", GREEDY, ignore_eos=True).completion_ids
    make_lora_adapter(tokenizer, data_dir / "adapters", "style-a", seed=1)
    make_lora_adapter(tokenizer, data_dir / "adapters", "style-b", seed=2)
    with_a = generation.generate(handle, "Hello there", GREEDY, adapter="style-a", ignore_eos=True).completion_ids
    with_b = generation.generate(handle, "Hello there", GREEDY, adapter="style-b", ignore_eos=True).completion_ids
    after = generation.generate(handle, "Hello there", GREEDY, ignore_eos=True).completion_ids
    assert with_a != before and with_b != before and with_a != with_b
    assert after == before  # switching back to the base model is exact
    assert handle.base_model is base_model  # the base weights were never reloaded
    # switching back and forth is stable
    assert (
        generation.generate(handle, "Hello there", GREEDY, adapter="style-a", ignore_eos=True).completion_ids == with_a
    )


def test_chat_uses_the_adapter(fresh_tiny_handle, tokenizer, data_dir):
    make_lora_adapter(tokenizer, data_dir / "adapters", "persona", seed=3)
    messages = chat.normalise([{"role": "user", "content": "Hi"}])
    base, _ = chat.reply(fresh_tiny_handle, messages, GREEDY)
    tuned, _ = chat.reply(fresh_tiny_handle, messages, GREEDY, adapter="persona")
    assert base.completion_ids != tuned.completion_ids


def test_retrained_adapter_is_reloaded(fresh_tiny_handle, tokenizer, data_dir):
    make_lora_adapter(tokenizer, data_dir / "adapters", "same-name", seed=4)
    first = generation.generate(fresh_tiny_handle, "Hello", GREEDY, adapter="same-name", ignore_eos=True).completion_ids
    time.sleep(0.01)
    path = make_lora_adapter(tokenizer, data_dir / "adapters", "same-name", seed=5)
    for f in path.glob("adapter_model.*"):  # make sure the version stamp moves even on coarse clocks
        os.utime(f, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    second = generation.generate(
        fresh_tiny_handle, "Hello", GREEDY, adapter="same-name", ignore_eos=True
    ).completion_ids
    assert first != second


def test_listing_and_names(tokenizer, data_dir):
    def made_here():
        return [a for a in adapters.list_adapters() if not a.is_bundled]

    assert made_here() == []
    make_lora_adapter(tokenizer, data_dir / "adapters", "one")
    (data_dir / "adapters" / "half-written").mkdir()  # no adapter_config.json yet
    listed = made_here()
    assert [a.name for a in listed] == ["one"] and listed[0].peft_type == "LORA"
    for bad in ["../etc", "/abs", "a/b", "", ".hidden", "x" * 65, "nul\x00"]:
        with pytest.raises(adapters.AdapterError):
            adapters.adapter_path(bad)


def test_unknown_or_incompatible_adapter_is_a_clear_error(fresh_tiny_handle, tokenizer, data_dir):
    with pytest.raises(models.ModelUnavailable, match="no adapter named"):
        generation.generate(fresh_tiny_handle, "Hi", GREEDY, adapter="missing")
    broken = data_dir / "adapters" / "broken"
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]}')
    with pytest.raises(models.ModelUnavailable, match="broken"):
        generation.generate(fresh_tiny_handle, "Hi", GREEDY, adapter="broken")
    # the model still serves afterwards
    assert generation.generate(fresh_tiny_handle, "Hi", GREEDY).finish_reason


def test_rows_with_different_adapters_share_one_batch(fresh_tiny_handle, tokenizer, data_dir):
    make_lora_adapter(tokenizer, data_dir / "adapters", "left", seed=1)
    make_lora_adapter(tokenizer, data_dir / "adapters", "right", seed=2)
    prompts = ["Hello there", "Hello there", "A longer prompt here", "Hello there"]
    row_adapters = [None, "left", "right", "left"]
    singles = [
        generation.generate(fresh_tiny_handle, p, GREEDY, adapter=a, ignore_eos=True).completion_ids
        for p, a in zip(prompts, row_adapters, strict=False)
    ]
    calls = []
    original = fresh_tiny_handle.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    fresh_tiny_handle.forward = counting  # instance attribute shadows the method
    try:
        rows = generation.generate_batch(
            fresh_tiny_handle, prompts, [GREEDY] * 4, adapter=row_adapters, ignore_eos=True
        )
    finally:
        del fresh_tiny_handle.forward
    assert [r.completion_ids for r in rows] == singles
    # one pass for the three distinct (prompt, adapter) prefills -- the two "left" rows share theirs --
    # then one batched pass per further token: not one per row
    assert len(calls) == GREEDY.max_new_tokens
    assert singles[0] != singles[1] != singles[2]
    # and the base model is exact again afterwards
    again = generation.generate(fresh_tiny_handle, "Hello there", GREEDY, ignore_eos=True).completion_ids
    assert again == singles[0]


def test_using_an_adapter_never_changes_what_the_base_model_looks_like(fresh_tiny_handle, tokenizer, data_dir):
    """The sidebar card, Fine-tune's target layers and its plan describe the base model, adapters attached or not."""
    from pipelines.train import finetune
    from playground.sidebar import model_card

    handle = fresh_tiny_handle
    card = model_card(handle)
    layers = finetune.linear_module_names(handle.base_model)
    plan = finetune.plan(handle.base_model, "lora", lora_r=8, target_modules=layers, num_virtual_tokens=20)
    assert layers == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert handle.parameter_count == sum(p.numel() for p in handle.model.parameters())

    make_lora_adapter(tokenizer, data_dir / "adapters", "demo-tutor", seed=1)
    generation.generate(handle, "Hello", GREEDY, adapter="demo-tutor")
    assert sum(p.numel() for p in handle.base_model.parameters()) > handle.parameter_count  # LoRA weights were injected

    assert finetune.linear_module_names(handle.base_model) == layers
    assert model_card(handle) == card
    again = finetune.plan(handle.base_model, "lora", lora_r=8, target_modules=layers, num_virtual_tokens=20)
    assert (again.total_params, again.trainable_params) == (plan.total_params, plan.trainable_params)
