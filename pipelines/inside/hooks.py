"""Forward hooks on the model's own modules, for one pass: read what a block (or its attention or MLP)
outputs, or replace it. Every view that looks at the residual stream (the lenses, patching, steering)
goes through these, so a module's output is read, and a tuple output rebuilt, in one way."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch


def first(output: Any) -> torch.Tensor:
    """The hidden states of a module's output (decoder blocks and attention return tuples)."""
    return output[0] if isinstance(output, tuple) else output


def replaced(output: Any, tensor: torch.Tensor) -> Any:
    """The output with its hidden states replaced, in the shape the module returned."""
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def attached(pairs: Sequence[tuple[torch.nn.Module, Any]]) -> Iterator[None]:
    """Each (module, hook) registered as a forward hook while the block runs, and removed after."""
    handles = [module.register_forward_hook(hook) for module, hook in pairs]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def recorded(modules: Sequence[torch.nn.Module]) -> Iterator[list[torch.Tensor]]:
    """The hidden states each module outputs during the block, in the order they ran (detached copies)."""
    kept: list[torch.Tensor] = []
    with attached([(module, lambda _m, _i, output: kept.append(first(output).detach().clone())) for module in modules]):
        yield kept
