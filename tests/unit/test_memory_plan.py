"""The memory plan's activation count against what autograd really saves, tensor by tensor."""

from __future__ import annotations

import pytest
import torch

from pipelines.train import memory_plan
from pipelines.train.training import DEFAULT_TARGETS

BATCH, LENGTH = 2, 24


def _model(layers: int = 12):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def saved_bytes(loss: torch.Tensor, parameters) -> int:
    """Bytes of the distinct storages the autograd graph of `loss` keeps for backward, weights excluded."""
    weights = {p.untyped_storage().data_ptr() for p in parameters}
    seen: dict[int, int] = {}
    stack, visited = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            try:
                value = getattr(node, attr)
            except Exception:  # noqa: BLE001 - some saved values cannot be read back; none are tensors
                continue
            for tensor in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(tensor, torch.Tensor):
                    storage = tensor.untyped_storage()
                    if storage.data_ptr() not in weights:
                        seen[storage.data_ptr()] = storage.nbytes()
        stack.extend(next_node for next_node, _ in node.next_functions)
    return sum(seen.values())


def _prepare(method: str, **options):
    """The model as trl would train it with `method`, its trainable parameter count, and the plan's options."""
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    model = _model()
    if method == "lora":
        model = get_peft_model(
            model,
            LoraConfig(
                r=options["lora_r"],
                lora_dropout=options["lora_dropout"],
                target_modules=list(options["lora_targets"]),
                task_type="CAUSAL_LM",
            ),
        )
    elif method == "prompt-tuning":
        model = get_peft_model(
            model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=options["virtual_tokens"])
        )
    elif method == "selective":
        names = tuple(f"layers.{b}." for b in options["train_blocks"])
        for name, parameter in model.named_parameters():
            parameter.requires_grad = any(n in name for n in names)
    model.train()
    return model


CASES = [
    ("full", {}),
    ("lora", {"lora_targets": DEFAULT_TARGETS, "lora_r": 8, "lora_dropout": 0.1}),
    ("lora", {"lora_targets": DEFAULT_TARGETS, "lora_r": 8, "lora_dropout": 0.0}),
    ("lora", {"lora_targets": ("q_proj", "v_proj"), "lora_r": 4, "lora_dropout": 0.05}),
    ("prompt-tuning", {"virtual_tokens": 5}),
    ("selective", {"train_blocks": [10, 11]}),
    ("selective", {"train_blocks": [2, 9]}),
]


@pytest.mark.parametrize("method, options", CASES)
def test_activations_are_what_autograd_saves(method, options):
    model = _prepare(method, **options)
    ids = torch.randint(0, 512, (BATCH, LENGTH), generator=torch.Generator().manual_seed(1))
    loss = model(input_ids=ids, labels=ids).loss
    measured = saved_bytes(loss, model.parameters())
    shape = memory_plan.ModelShape.of(model.get_base_model() if hasattr(model, "get_base_model") else model)
    planned = memory_plan.estimate(
        shape, method, trainable=0, step=memory_plan.Step(batch=BATCH, length=LENGTH), **options
    ).activations
    assert planned == pytest.approx(measured, rel=0.04), (method, options, planned, measured)


def test_what_moves_the_estimate():
    """Activations follow batch x length, not the trainable count; LoRA's dropout copies cost
    more than full fine-tuning's saved inputs; checkpointing and 16-bit activations cut them."""
    shape = memory_plan.ModelShape.of(_model())
    lora = {"lora_targets": DEFAULT_TARGETS, "lora_r": 8, "lora_dropout": 0.05}
    base = memory_plan.estimate(shape, "lora", trainable=1000, step=memory_plan.Step(batch=4, length=128), **lora)
    assert (
        memory_plan.estimate(
            shape, "lora", trainable=9000, step=memory_plan.Step(batch=4, length=128), **lora
        ).activations
        == base.activations
    )
    assert (
        memory_plan.estimate(
            shape, "lora", trainable=1000, step=memory_plan.Step(batch=8, length=128), **lora
        ).activations
        == 2 * base.activations
    )
    assert (
        memory_plan.estimate(
            shape, "lora", trainable=1000, step=memory_plan.Step(batch=4, length=256), **lora
        ).activations
        == 2 * base.activations
    )
    full = memory_plan.estimate(shape, "full", trainable=shape.params, step=memory_plan.Step(batch=4, length=128))
    assert base.activations > full.activations  # the dropout copies
    assert full.optimizer == 8 * shape.params and full.gradients == 4 * shape.params
    checkpointed = memory_plan.estimate(
        shape, "full", trainable=shape.params, step=memory_plan.Step(batch=4, length=128, checkpointing=True)
    )
    half = memory_plan.estimate(
        shape, "full", trainable=shape.params, step=memory_plan.Step(batch=4, length=128, mixed_precision=True)
    )
    assert checkpointed.activations < full.activations and half.activations < full.activations
    qlora = memory_plan.estimate(
        shape, "lora", trainable=1000, step=memory_plan.Step(batch=4, length=128), base="nf4", **lora
    )
    assert qlora.weights < base.weights / 2
