"""Optional llama.cpp engine: base-model forward passes on the GGUF file itself, ~7x faster on CPU.

Only the forward pass moves to llama.cpp. Tokenizing, sampling (`sampling.process_logits`, the
same seeded generator per row), log-probabilities, stop strings and detokenizing stay in
`generation`, so a request means the same thing on either engine and the UI cannot tell them apart
except by speed; the distribution inspector shows llama.cpp's own logits. Adapters, prompt tuning
and all training stay on the torch model: llama.cpp does not run PEFT adapters (its
`Capabilities` say so, and `generation.engine_for` sends such rows to the local engine).

`llama-cpp-python` compiles llama.cpp on install, so it is never a default dependency:
`make llamacpp` installs it from requirements-llamacpp.txt and PLAYGROUND_ENGINE=llamacpp turns it on.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.engine.engines import LogitsEngine
from pipelines.errors import InvalidParameter, PlaygroundError

log = logging.getLogger(__name__)

INSTALL_HINT = "run `make llamacpp` (pip install -r requirements-llamacpp.txt; it compiles llama.cpp)"


class EngineUnavailable(PlaygroundError, RuntimeError):
    """llama.cpp was asked for but cannot run here; the message says why and what to do."""

    exit_code = 1


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppEngine(LogitsEngine):
    """One llama.cpp context over a GGUF file, fed token ids and returning next-token logits.

    The context holds one sequence's KV cache. `next_logits` reuses the longest prefix that the
    cache already holds, so a stream that asks again with one more token costs one decode step,
    and interleaved streams stay correct (a switch costs re-reading the differing tail). The lock
    is held for one call only, like `ModelHandle.forward`, so an abandoned stream never blocks others.
    """

    name = "llama.cpp"

    def __init__(self, gguf: Path, *, n_ctx: int, threads: int, n_vocab: int | None = None) -> None:
        if not available():
            raise EngineUnavailable(f"PLAYGROUND_ENGINE=llamacpp needs the llama-cpp-python package: {INSTALL_HINT}")
        from llama_cpp import Llama

        self.gguf = Path(gguf)
        try:
            self.llm = Llama(
                model_path=str(self.gguf),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as error:
            raise EngineUnavailable(f"llama.cpp could not load {self.gguf.name}: {error}") from error
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        if n_vocab is not None and n_vocab != self.n_vocab:
            raise EngineUnavailable(
                f"{self.gguf.name} has a vocabulary of {self.n_vocab} tokens but the tokenizer has {n_vocab}: "
                "the GGUF file is not the configured model"
            )
        self.lock = threading.Lock()

    def next_logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Logits (float32, CPU) for the token after `ids`."""
        if not ids:
            raise ValueError("next_logits needs at least one token")
        if len(ids) > self.n_ctx:
            raise InvalidParameter("prompt", f"{len(ids)} tokens do not fit llama.cpp's context of {self.n_ctx}")
        wanted = np.asarray(ids, dtype=np.intc)
        with self.lock:
            llm = self.llm
            held = llm.n_tokens
            reuse = 0
            if held:
                n = min(held, len(wanted) - 1)  # the last token must be decoded to get its logits
                diff = np.flatnonzero(llm.input_ids[:n] != wanted[:n])
                reuse = int(diff[0]) if diff.size else n
            llm.n_tokens = reuse  # eval() drops the KV cache past n_tokens before decoding
            llm.eval(wanted[reuse:].tolist())
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(self.n_vocab,))
            return torch.from_numpy(logits.copy())

    def close(self) -> None:
        with self.lock:
            self.llm.close()


def gguf_for(source: str, bundled: Path | None) -> Path | None:
    """The GGUF file behind a model source: the bundled file, or the only *.gguf in a model directory."""
    if bundled is not None:
        return bundled
    directory = Path(source)
    if directory.is_dir():
        files = sorted(directory.glob("*.gguf"))
        if len(files) == 1:
            return files[0]
    return None


def load(source: str, bundled: Path | None, *, n_ctx: int, threads: int, n_vocab: int | None) -> LlamaCppEngine:
    gguf = gguf_for(source, bundled)
    if gguf is None:
        raise EngineUnavailable(
            f"PLAYGROUND_ENGINE=llamacpp needs a GGUF file of the model: {source!r} is neither the bundled model "
            "nor a model directory holding exactly one .gguf file"
        )
    engine = LlamaCppEngine(gguf, n_ctx=n_ctx, threads=threads, n_vocab=n_vocab)
    log.info("llama.cpp engine on %s (%d threads, context %d)", gguf.name, threads, engine.n_ctx)
    return engine


def describe(engine: Any) -> str:
    return "llama.cpp" if isinstance(engine, LlamaCppEngine) else "torch"
