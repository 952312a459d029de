"""ZeroGPU: on a Space with ZeroGPU hardware, a GPU exists only inside functions decorated with
`spaces.GPU`, each call run in a process forked for it, for at most its `duration` seconds.

The model calls a request makes go through a few functions (`generation.stream_batch` for every
completion, chat, comparison, RAG answer and reasoning row; `generation.inspect_next_token`; the
reward model's scoring; the "Inside the model" pass). `task` decorates them with `spaces.GPU`
there, and is the function itself everywhere else: on a CPU, on a dedicated GPU, and wherever the
`spaces` package is not installed (it is optional; ZeroGPU Spaces have it).

What changes on ZeroGPU (SPACES_ZERO_GPU=true, set by the Space):
- continuous batching is off: its scheduler decodes in a thread of its own, outside any request,
  where no GPU can be had; each request decodes on its own inside its GPU call instead;
- training jobs run on CPU processes (a job outlives any GPU call's duration);
- what a call changes in the model process (adapters it loaded, caches) stays in its fork, and a
  Stop pressed during a call takes effect when the call ends; `torch.compile` is not used (it
  cannot cross the fork).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from pipelines.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

# Seconds one call may hold the GPU: ZeroGPU's default quota counts this, not the time used.
DEFAULT_DURATION = 60


def on_zero_gpu() -> bool:
    """A ZeroGPU Space sets SPACES_ZERO_GPU=true in the app's environment."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def task(duration: int = DEFAULT_DURATION) -> Callable[[F], F]:
    """`spaces.GPU(duration=...)` on ZeroGPU; elsewhere the function unchanged (no `spaces` needed)."""

    def decorate(function: F) -> F:
        if not on_zero_gpu():
            return function
        try:
            import spaces
        except ImportError as error:
            raise ConfigError(
                "SPACES_ZERO_GPU is set but the `spaces` package is missing: add `spaces` to requirements.txt"
            ) from error
        return spaces.GPU(duration=duration)(function)

    return decorate


def prepare() -> None:
    """Import `spaces` before anything touches CUDA (its own rule on ZeroGPU); nothing elsewhere."""
    if on_zero_gpu():
        import spaces  # noqa: F401
