"""Fine-tuning: spec validation, the plan, the loss mask, prompt tuning at inference."""

from __future__ import annotations

import pytest
import torch

from pipelines.engine import generation, models
from pipelines.engine.chat import Message
from pipelines.engine.sampling import InvalidParameter, SamplingParams
from pipelines.train import finetune, memory_plan
from tests.helpers import build_tiny_model


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"out": "../escape"}, "out"),
        ({"method": "ia3"}, "method"),
        ({"method": "selective"}, "train_blocks"),
        ({"method": "selective", "train_blocks": ["27,x"]}, "train_blocks"),
        ({"lora_r": 0}, "lora_r"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_fraction": 1.0}, "eval_fraction"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"target_modules": []}, "target_modules"),
        ({"max_length": 4}, "max_length"),
    ],
)
def test_spec_validation_names_the_parameter(kwargs, param):
    with pytest.raises(InvalidParameter) as info:
        finetune.FinetuneSpec(**{"data": "x.jsonl", "out": "ok", **kwargs})
    assert info.value.param == param


def test_qlora_is_refused_with_the_reason_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    available, reason = finetune.qlora_available()
    assert not available and "CUDA" in reason
    with pytest.raises(InvalidParameter, match="CUDA"):
        finetune.FinetuneSpec(data="x", out="ok", qlora=True)


def test_spec_round_trips_through_json_dicts():
    spec = finetune.FinetuneSpec(data="x.jsonl", out="ok", method="prompt-tuning", lora_r=4)
    assert finetune.FinetuneSpec.from_dict({**spec.to_dict(), "unknown_future_field": 1}) == spec
    assert spec.lr == 3e-2 and finetune.FinetuneSpec(data="x", out="a").lr == 5e-4


def test_linear_layers_are_detected(tiny_handle):
    assert finetune.linear_module_names(tiny_handle.model) == list(finetune.DEFAULT_TARGETS)


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], list(finetune.DEFAULT_TARGETS)])
def test_plan_counts_exactly_what_peft_trains(tokenizer, targets):
    from peft import LoraConfig, get_peft_model

    model = build_tiny_model(tokenizer)
    plan = finetune.plan(model, "lora", lora_r=4, target_modules=targets, num_virtual_tokens=10)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets, task_type="CAUSAL_LM"))
    assert plan.trainable_params == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    full, lora, prompt_tuning, qlora = plan.rows
    assert full["trainable"] == plan.total_params and lora["trainable"] == plan.trainable_params
    assert full["weights"] + full["optimizer"] == plan.total_params * 12  # fp32 weights + two Adam moments
    assert qlora["weights"] < lora["weights"] < full["total"]
    # activations depend on batch x length, which the plan now takes (pipelines/train/memory_plan.py)
    bigger = finetune.plan(
        model, "lora", memory_plan.Step(batch=16, length=512), lora_r=4, target_modules=targets, num_virtual_tokens=10
    )
    assert bigger.rows[1]["activations"] == 2 * lora["activations"]
    prompt = finetune.plan(
        build_tiny_model(tokenizer), "prompt-tuning", lora_r=4, target_modules=[], num_virtual_tokens=10
    )
    assert prompt.trainable_params == 10 * 64


def test_loss_mask_is_what_trl_trains_on(tokenizer):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from pipelines.train import sft_data

    conversation = [Message("user", "What is two plus two?"), Message("assistant", "In short: four.")]
    shown = finetune.loss_mask_example(tokenizer, conversation)
    args = SFTConfig(output_dir="unused", report_to="none", bf16=False, use_cpu=True, max_steps=1)
    trainer = SFTTrainer(
        model=build_tiny_model(tokenizer),
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(sft_data.to_examples([conversation])),
    )
    labels = trainer.train_dataset[0]["labels"] if "labels" in trainer.train_dataset.column_names else None
    ids = trainer.train_dataset[0]["input_ids"]
    if labels is None:
        mask = trainer.train_dataset[0]["completion_mask"]
    else:
        mask = [label != -100 for label in labels]
    assert [tokenizer.decode([i]) for i in ids] == [text for text, _ in shown]
    assert [bool(m) for m in mask] == [loss for _, loss in shown]
    assert shown[-2] == ("<|im_end|>", True)  # the model learns to stop


def test_prompt_tuning_adapter_generates_like_peft(tokenizer, fresh_tiny_handle, data_dir):
    """Our prefill-once path gives exactly what PEFT's own generate gives."""
    from peft import PromptTuningConfig, get_peft_model

    torch.manual_seed(3)
    peft_model = get_peft_model(
        build_tiny_model(tokenizer), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6)
    )
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.normal_(0, 2.0)
    peft_model.save_pretrained(data_dir / "adapters" / "pt")
    ids = tokenizer("Once upon a time", return_tensors="pt")
    with torch.inference_mode():
        expected = peft_model.generate(**ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)[0, -8:].tolist()
    ours = generation.generate(
        fresh_tiny_handle,
        "Once upon a time",
        SamplingParams(temperature=0, max_new_tokens=8),
        adapter="pt",
        ignore_eos=True,
    )
    base = generation.generate(
        fresh_tiny_handle, "Once upon a time", SamplingParams(temperature=0, max_new_tokens=8), ignore_eos=True
    )
    assert ours.completion_ids == expected and base.completion_ids != expected
    # batched with left padding, and the inspector, use the same prefix
    rows = generation.generate_batch(
        fresh_tiny_handle,
        ["Once upon a time", "A much longer prompt for padding"],
        [SamplingParams(temperature=0, max_new_tokens=8)] * 2,
        adapter="pt",
        ignore_eos=True,
    )
    assert rows[0].completion_ids == expected
    view = generation.inspect_next_token(
        fresh_tiny_handle, ids["input_ids"][0].tolist(), SamplingParams(temperature=0), adapter="pt"
    )
    assert max(view.rows, key=lambda r: r.raw_prob).id == expected[0]
    assert models.ModelHandle.virtual_prefix(fresh_tiny_handle, "pt").shape == (6, 64)
