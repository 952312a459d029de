"""Rows with different LoRA adapters in one forward pass: every row's adapter gathered into one batched
matmul per layer (Punica's and S-LoRA's BGMV), where PEFT's mixed batch loops over the adapters.

Why: a class where every student decodes with their own adapter shares one running batch on the
transformers lane (scheduler.py). PEFT's mixed-batch inference (`adapter_names=`) runs, in every adapted
layer and every step, a Python loop over the batch's adapters with two small matmuls, an index and an
index-add each: 16 adapters x 7 projections x 30 layers of the bundled model are ~17,000 small ops per
step, and 16 students got 2.5x one student alone. Here the loaded adapters' A and B matrices of each layer
are stacked once (`[adapters + 1, in, r]`, `[adapters + 1, r, out]`, slot 0 all zeros for base-model
rows, ranks padded with zeros), and a step gathers each row's slot and adds `(x @ A[row]) @ B[row] *
scaling[row]` in two batched matmuls per layer, on PEFT's own modules with their adapter layers off.

Plain LoRA on linear layers only (the Fine-tune tab's adapters): a batch with DoRA or another variant,
a LoRA bias, an adapted embedding or merged weights goes through PEFT's mixed batch as before.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from pipelines.errors import PlaygroundError

BASE = "__base__"  # PEFT's name for a row without an adapter in `adapter_names`


@dataclass
class _Stack:
    """One layer's adapters, slot 0 first (zeros: the base model)."""

    a: torch.Tensor  # [slots, in, r]
    b: torch.Tensor  # [slots, r, out]
    scaling: torch.Tensor  # [slots]


@dataclass
class MixedLora:
    """The stacked adapters of one PEFT model, rebuilt when the set of loaded adapters changes."""

    _key: tuple[str, ...] | None = None
    _stacks: dict[Any, _Stack] = field(default_factory=dict)
    _unsupported: set[str] = field(default_factory=set)
    _dora: set[str] = field(default_factory=set)  # refused by PEFT's mixed batch too
    _hooked: weakref.WeakSet = field(default_factory=weakref.WeakSet)
    _active: tuple[dict[Any, _Stack], torch.Tensor] | None = None

    def usable(self, peft_model: Any, names: Sequence[str]) -> bool:
        """Whether these rows' adapters can be gathered here (else PEFT's mixed batch serves them)."""
        self._build(peft_model)
        return not any(n in self._unsupported for n in names if n != BASE)

    def dora(self, names: Sequence[str]) -> list[str]:
        """The DoRA adapters among these rows' (PEFT's mixed batch refuses them, and a refusal inside its
        forward leaves its per-row hooks on the model: they must never reach it)."""
        return sorted({n for n in names if n in self._dora})

    @contextmanager
    def rows(self, peft_model: Any, names: Sequence[str]) -> Iterator[None]:
        """Within it, a forward pass of `peft_model` (its adapter layers off) adds each row's adapter."""
        self._build(peft_model)
        assert self._key is not None
        slot = {name: i + 1 for i, name in enumerate(self._key)}
        # every adapter of the rows is loaded (models.py loads them first): never silently a base row
        index = torch.tensor([0 if n == BASE else slot[n] for n in names], dtype=torch.long)
        self._active = (self._stacks, index)
        try:
            yield
        finally:
            self._active = None

    def _build(self, peft_model: Any) -> None:
        from peft.tuners.lora import LoraLayer
        from peft.tuners.lora.layer import Linear as LoraLinear

        key = tuple(sorted(peft_model.peft_config))  # the adapters loaded (a new one: a new name, see models.py)
        if key == self._key:
            return
        layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
        unsupported: set[str] = set()
        dora: set[str] = set()
        stacks: dict[Any, _Stack] = {}
        for module in layers:
            adapted = [n for n in key if n in module.lora_A or n in module.lora_embedding_A]
            if not isinstance(module, LoraLinear) or module.merged or getattr(module, "fan_in_fan_out", False):
                unsupported.update(adapted)
                continue
            for name in adapted:
                if name in module.lora_variant or module.lora_B[name].bias is not None:
                    unsupported.add(name)
                if getattr(module, "use_dora", {}).get(name, False):
                    dora.add(name)
            stacks[module] = _stack(module, key)
            if module not in self._hooked:
                module.register_forward_hook(self._add)
                self._hooked.add(module)
        self._key, self._stacks, self._unsupported, self._dora = key, stacks, unsupported, dora

    def _add(self, module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        """The forward hook: the base layer's output plus each row's own adapter."""
        active = self._active
        if active is None:
            return None
        stacks, index = active
        stack = stacks.get(module)
        if stack is None:
            return None
        x = args[0]
        if x.dim() != 3 or x.shape[0] != index.shape[0]:
            raise PlaygroundError(f"mixed LoRA: {x.shape[0]} rows for {index.shape[0]} adapters")
        index = index.to(x.device)
        hidden = torch.bmm(x.to(stack.a.dtype), stack.a.index_select(0, index))
        delta = torch.bmm(hidden, stack.b.index_select(0, index)) * stack.scaling.index_select(0, index)[:, None, None]
        return output + delta.to(output.dtype)


def _stack(module: Any, key: Sequence[str]) -> _Stack:
    """`module`'s A and B of every adapter in `key` (zeros where it has none), ranks padded."""
    base = module.base_layer
    in_features, out_features = base.in_features, base.out_features
    rank = max((module.lora_A[n].out_features for n in key if n in module.lora_A), default=1)
    weight = next(iter(module.lora_A.values())).weight if len(module.lora_A) else base.weight
    a = torch.zeros((len(key) + 1, in_features, rank), dtype=weight.dtype, device=weight.device)
    b = torch.zeros((len(key) + 1, rank, out_features), dtype=weight.dtype, device=weight.device)
    scaling = torch.zeros(len(key) + 1, dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        for slot, name in enumerate(key, start=1):
            if name not in module.lora_A:
                continue
            r = module.lora_A[name].out_features
            a[slot, :, :r] = module.lora_A[name].weight.t()
            b[slot, :r, :] = module.lora_B[name].weight.t()
            scaling[slot] = float(module.scaling[name])
    return _Stack(a, b, scaling)
