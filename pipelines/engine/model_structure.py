"""What a base model is made of, read the same way whether or not PEFT adapters are attached.

Attaching a LoRA adapter rewrites the base model in place: each targeted `Linear` becomes a PEFT
layer holding the original as `base_layer` beside `lora_A.<adapter>` / `lora_B.<adapter>`. Read
naively, the model then has extra parameters (137M instead of 135M for SmolLM2 with one adapter)
and "layers" called `base_layer` or after the adapter. Everything the UI derives from the base
model (its size, the layer types LoRA can target, the fine-tuning plan) goes through here, so
using an adapter once never changes what the base model looks like.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

# The projection to the vocabulary: never a LoRA target in this app (and a classifier's head).
HEAD_NAMES = ("lm_head", "score")


def tuner_layer_type() -> type | tuple[()]:
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # peft absent: nothing can have been injected
        return ()
    return BaseTunerLayer


def base_named_modules(model: Any) -> Iterator[tuple[str, torch.nn.Module]]:
    """`named_modules()` of the model as it was before any adapter was injected.

    A PEFT tuner layer is reported as its original layer under the original name, and the
    adapter's own modules (lora_A, lora_B, dropout, ...) are not reported at all.
    """
    tuner = tuner_layer_type()

    def walk(name: str, module: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
        if tuner and isinstance(module, tuner):
            module = module.get_base_layer()  # type: ignore[attr-defined]  # PEFT's BaseTunerLayer
        yield name, module
        for child_name, child in module.named_children():
            yield from walk(f"{name}.{child_name}" if name else child_name, child)

    yield from walk("", model)


def parameter_count(model: Any) -> int:
    """Parameters of the base model alone; tied weights (embeddings = output head) count once."""
    seen: set[int] = set()
    total = 0
    for _, module in base_named_modules(model):
        for param in module.parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                total += param.numel()
    return total


def decoder_blocks(model: Any) -> list[torch.nn.Module]:
    """The base model's decoder blocks in order (`model.model.layers` in transformers' decoders);
    empty for a model without that layout, where choosing blocks does not apply."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    return list(layers) if layers is not None else []


def linear_layers(model: Any) -> Iterator[tuple[str, torch.nn.Linear]]:
    """Every linear layer of the base model but the output head, by full name."""
    for name, module in base_named_modules(model):
        if isinstance(module, torch.nn.Linear) and not any(head in name for head in HEAD_NAMES):
            yield name, module


def linear_layer_types(model: Any, preferred_order: tuple[str, ...] = ()) -> list[str]:
    """The distinct linear layer types (`q_proj`, `down_proj`, ...) LoRA can target."""
    names = {full_name.rsplit(".", 1)[-1] for full_name, _ in linear_layers(model)}
    order = {name: i for i, name in enumerate(preferred_order)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))
