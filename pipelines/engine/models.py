"""The one loaded base model: loading it on the best device, the shared handle, adapters switched per request.

Where the weights come from (the bundled GGUF converted once, a directory, a Hub id) is
`pipelines.engine.model_source`; its names are re-exported here for callers that predate the split.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from pipelines.config import BUNDLED_MODEL, Settings, get_settings
from pipelines.engine import adapters, model_structure
from pipelines.engine.hardware import DevicePlan, apply_threads, detect, plan_device
from pipelines.engine.model_source import (  # noqa: F401 - re-exported: where the model comes from, for older callers
    BUNDLED_NAME,
    BUNDLED_PACKAGE,
    ModelUnavailable,
    _first_line,
    _local_or_hub,
    _required_bundled_gguf,
    bundled_gguf_path,
    bundled_model_dir,
    check_configured,
    configured_model_id,
    convert_gguf,
    default_model_id,
    how_to_get_a_model,
    resolve_source,
)

log = logging.getLogger(__name__)


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()  # nothing being built
    return event


@dataclass
class ModelHandle:
    """One loaded base model shared by every tab, plus what callers need to know about it.

    Forward passes go through `forward`, which holds `lock` only for the duration of one pass:
    several streams can interleave step by step, and an abandoned stream never keeps the lock.
    """

    model: Any
    tokenizer: Any
    name: str
    source: str
    plan: DevicePlan
    lock: threading.RLock = field(default_factory=threading.RLock)
    # adapter name -> (internal PEFT adapter name, weights version it was loaded from)
    _loaded_adapters: dict[str, tuple[str, float]] = field(default_factory=dict)
    _active_adapter: str | None = None
    # prompt-tuning adapters: name -> (weights version, learned virtual-token embeddings)
    _prompt_adapters: dict[str, tuple[float, torch.Tensor]] = field(default_factory=dict)
    # adapters addressed by explicit path (a job evaluating what it just trained), not by data dir
    _adapter_paths: dict[str, Path] = field(default_factory=dict)
    # the lean fp16 decoder for base-model generation on CPU (None: transformers decodes everything)
    fast_decoder: Any = None
    _fast_ready: threading.Event = field(default_factory=lambda: _set_event())
    # the continuous-batching scheduler that owns this model's decoding (pipelines/engine/scheduler.py)
    scheduler: Any = None
    # rows with different LoRA adapters in one pass, gathered per layer (pipelines/engine/mixed_lora.py)
    _mixed_lora: Any = field(default_factory=lambda: _new_mixed_lora())
    # the engine configured beside the local model (pipelines/engine/engines.py: llama.cpp or an
    # OpenAI-compatible server); it serves the rows its capabilities allow, the local model the rest.
    # None: the local model serves everything.
    engine: Any = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_window(self) -> int:
        """The local model's window; with a remote engine, the smaller of it and the server's.

        Prompts are counted with the local tokenizer either way: the server's own count may differ
        a little when it serves another model.
        """
        local = self.local_context_window
        server = self.remote_server
        return min(local, server.context_window) if server is not None and server.context_window else local

    @property
    def local_context_window(self) -> int:
        config = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048

    @property
    def eos_token_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        for candidate in (
            getattr(self.model.generation_config, "eos_token_id", None),
            self.tokenizer.eos_token_id,
        ):
            if isinstance(candidate, int):
                ids.add(candidate)
            elif isinstance(candidate, (list, tuple)):
                ids.update(int(i) for i in candidate)
        return frozenset(ids)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.lock, torch.inference_mode():
            yield

    def attach_fast_decoder(self, build: Callable[[], Any], *, background: bool) -> None:
        """Build the fast decoder now, or in a daemon thread that installs it when done."""

        def run() -> None:
            try:
                self.fast_decoder = build()
            except Exception:  # the transformers path keeps serving; say why in the log
                log.exception("the fast decoder could not be built; decoding stays on transformers")
            finally:
                self._fast_ready.set()

        self._fast_ready.clear()
        if background:
            threading.Thread(target=run, name="fast-decoder-build", daemon=True).start()
        else:
            run()

    def wait_fast_decoder(self, timeout: float | None = None) -> Any:
        """The fast decoder once its build has finished (None when there is none)."""
        self._fast_ready.wait(timeout)
        return self.fast_decoder

    @property
    def remote_server(self) -> Any:
        """What the remote engine's probe found (`openai_engine.Server`), or None without one."""
        return getattr(self.engine, "server", None)

    @property
    def engine_name(self) -> str:
        return self.engine.name if self.engine is not None else "torch"

    def forward(self, adapter: str | None | Sequence[str | None] = None, **inputs: Any) -> Any:
        """One forward pass; `adapter` may name one adapter, or give one per batch row."""
        with self.locked():
            if isinstance(adapter, (list, tuple)):
                names = self._activate_per_row(adapter)
                if names is not None and self._mixed_lora.usable(self.model, names):
                    self._activate(None)  # PEFT's adapter layers off: each row's adapter is added by mixed_lora
                    with self._mixed_lora.rows(self.model, names):
                        return self.model(**inputs)
                if names is not None and (dora := self._mixed_lora.dora(names)):
                    raise ModelUnavailable(
                        f"adapter {dora[0].split('@')[0]!r} uses DoRA, which cannot share a batch with other "
                        "adapters: use it on its own"
                    )
                if names is not None:  # a LoRA bias, an adapted embedding: PEFT's own mixed batch
                    self.model.base_model.enable_adapter_layers()
                    self._active_adapter = "\0mixed"  # the next single-adapter call re-establishes its state
                    return self.model(**inputs, adapter_names=names)
                self._activate(adapter[0])
            else:
                self._activate(adapter if isinstance(adapter, str) else None)
            return self.model(**inputs)

    def _activate_per_row(self, row_adapters: Sequence[str | None]) -> list[str] | None:
        """Each row's own LoRA adapter (or none), loaded: for mixed_lora's gathered pass, or PEFT's mixed batch.

        Returns the per-row PEFT adapter names, or None when all rows use the same adapter.
        """
        if len(set(row_adapters)) == 1:
            return None
        for adapter in {a for a in row_adapters if a is not None}:
            info = self._adapter_info(adapter)
            if info.peft_type != "LORA":
                raise ModelUnavailable(
                    f"adapter {adapter!r} ({info.peft_type}) cannot share a batch with other adapters"
                )
            version = adapters.version(info.path)
            loaded = self._loaded_adapters.get(adapter)
            if loaded is None or loaded[1] != version:
                self._load_adapter(adapter, info.path, version)
        return [self._loaded_adapters[a][0] if a is not None else "__base__" for a in row_adapters]

    def is_prompt_tuning(self, adapter: str | None) -> bool:
        return adapter is not None and self._adapter_info(adapter).peft_type == "PROMPT_TUNING"

    def register_adapter(self, name: str, path: Path) -> None:
        """Make an adapter directory usable by name without publishing it to the data dir."""
        self._adapter_paths[name] = Path(path)

    def _adapter_info(self, adapter: str) -> adapters.AdapterInfo:
        try:
            if adapter in self._adapter_paths:
                return adapters.read(self._adapter_paths[adapter])
            return adapters.get(adapter)
        except adapters.AdapterError as error:
            raise ModelUnavailable(str(error)) from error

    def adapter_fingerprint(self, adapter: str | None) -> tuple[str, float] | None:
        """Identifies the exact weights an adapter name refers to now (for caches)."""
        if adapter is None:
            return None
        return adapter, adapters.version(self._adapter_info(adapter).path)

    def virtual_prefix(self, adapter: str | None) -> torch.Tensor | None:
        """Learned virtual-token embeddings of a prompt-tuning adapter, else None.

        Prompt tuning trains only these vectors; at inference they are prepended to the prompt's
        embeddings once, at prefill (PEFT's forward would prepend them on every decode step).
        """
        if adapter is None:
            return None
        info = self._adapter_info(adapter)
        if info.peft_type != "PROMPT_TUNING":
            return None
        version = adapters.version(info.path)
        cached = self._prompt_adapters.get(adapter)
        if cached is None or cached[0] != version:
            from safetensors.torch import load_file

            weights = info.path / "adapter_model.safetensors"
            try:
                embeddings = load_file(str(weights))["prompt_embeddings"]
            except (OSError, KeyError) as error:
                raise ModelUnavailable(
                    f"prompt-tuning adapter {adapter!r} is unreadable ({_first_line(error)})"
                ) from error
            hidden = self.base_model.get_input_embeddings().weight.shape[1]
            if embeddings.shape[-1] != hidden:
                raise ModelUnavailable(
                    f"adapter {adapter!r} was trained on a model with hidden size {embeddings.shape[-1]}, not {hidden}"
                )
            cached = (version, embeddings)
            self._prompt_adapters[adapter] = cached
        dtype = self.base_model.get_input_embeddings().weight.dtype
        return cached[1].to(device=self.device, dtype=dtype)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        with self.locked():
            return self.base_model.get_input_embeddings()(input_ids)

    def _activate(self, adapter: str | None) -> None:
        """Make `adapter` (or the bare base model) the one the next forward pass uses.

        Adapters are attached to the one base model with PEFT and switched per request; the
        base weights are never reloaded or copied. An adapter rewritten on disk (retrained under
        the same name) is reloaded on its next use.
        """
        info = self._adapter_info(adapter) if adapter is not None else None
        if (
            adapter is None or info is None or info.peft_type == "PROMPT_TUNING"
        ):  # base weights (prompt tuning adds only inputs)
            if self._active_adapter is not None:
                self.model.base_model.disable_adapter_layers()
                self._active_adapter = None
            return
        version = adapters.version(info.path)
        loaded = self._loaded_adapters.get(adapter)
        if loaded is None or loaded[1] != version:
            self._load_adapter(adapter, info.path, version)
        internal = self._loaded_adapters[adapter][0]
        if self._active_adapter != adapter:
            self.model.base_model.enable_adapter_layers()
            self.model.set_adapter(internal)
            self._active_adapter = adapter

    def _load_adapter(self, name: str, path: Path, version: float) -> None:
        from peft import PeftModel

        internal = f"{name}@{int(version)}"
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=internal)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=internal)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelUnavailable(
                f"adapter {name!r} cannot be used with {self.name} ({_first_line(error)}); "
                "it was probably trained on a different base model"
            ) from error
        self.model.eval()
        previous = self._loaded_adapters.get(name)
        self._loaded_adapters[name] = (internal, version)
        self._active_adapter = "\0stale"  # force set_adapter on the way out
        if previous is not None:
            self.model.set_adapter(internal)
            self.model.delete_adapter(previous[0])

    @property
    def parameter_count(self) -> int:
        """The base model's size, the same before and after adapters are attached to it."""
        return model_structure.parameter_count(self.base_model)

    @property
    def base_model(self) -> Any:
        """The underlying transformers model, whether or not adapters are attached."""
        from peft import PeftModel

        return self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model


def _new_mixed_lora() -> Any:
    from pipelines.engine.mixed_lora import MixedLora

    return MixedLora()


def load_handle(
    model_id: str | None = None, settings: Settings | None = None, *, background: bool = False
) -> ModelHandle:
    """Load a base model for inference on the best device this machine has.

    `background`: build the fast decoder in a thread (its fp16 packing releases the GIL, so in
    the app it overlaps the first requests, which decode through transformers until it is
    ready). One-shot callers (CLI, benchmarks) build it before returning.
    """
    settings = settings or get_settings()
    model_id = model_id or configured_model_id(settings)
    remote = _remote_engine(settings) if settings.engine == "openai" else None  # before the weights: fail fast
    plan = plan_device(detect(), settings.device, settings.dtype, settings.threads, fast=settings.fast)
    apply_threads(plan)
    source, name = resolve_source(model_id, settings)
    try:
        tokenizer, model = _from_pretrained(source, plan, local_files_only=True)
    except (OSError, ValueError) as local_error:
        if Path(source).is_dir() or not _hub_reachable():
            raise _unavailable(model_id, local_error) from local_error
        try:
            tokenizer, model = _from_pretrained(source, plan, local_files_only=False)
        except (OSError, ValueError) as error:
            raise _unavailable(model_id, error) from error
    model.to(plan.device).eval()
    handle = wrap(model, tokenizer, name=name, source=source, plan=plan)
    handle.engine = remote
    if plan.fast_decode:
        from pipelines.engine import fast_decode

        reason = fast_decode.unsupported_reason(model)
        if reason is None:
            handle.attach_fast_decoder(lambda: fast_decode.FastDecoder.build(model), background=background)
        else:  # the sidebar's model card shows the plan: say why this model decodes through transformers
            handle.plan = replace(
                plan, fast_decode=False, reason=f"{plan.reason.split(';')[0]}; no fast decoder: {reason}"
            )
    if settings.engine == "llamacpp":
        from pipelines.engine import llamacpp_engine

        try:
            handle.engine = llamacpp_engine.load(
                source,
                bundled_gguf_path() if model_id == BUNDLED_MODEL else None,
                n_ctx=min(handle.context_window, 8192),
                threads=plan.threads,
                n_vocab=model.config.vocab_size,
            )
        except llamacpp_engine.EngineUnavailable as error:
            raise ModelUnavailable(str(error)) from error
    return handle


def _remote_engine(settings: Settings) -> Any:
    """The OpenAI-compatible server, probed; a ServerError (a ModelUnavailable) names it and what failed."""
    from pipelines.engine import openai_engine, remote_stream

    assert settings.openai_base_url is not None  # Settings refuses openai without it
    client = openai_engine.OpenAIEngine(
        settings.openai_base_url,
        api_key=settings.openai_api_key,
        model=settings.openai_model,
        kind=settings.openai_server,
        timeout=settings.openai_timeout,
    )
    client.probe()
    return remote_stream.RemoteEngine(client)


def _from_pretrained(source: str, plan: DevicePlan, *, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=plan.dtype, attn_implementation=plan.attn_implementation, local_files_only=local_files_only
    )
    return tokenizer, model


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP probe, so an offline machine fails in seconds instead of a minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _unavailable(model_id: str, error: BaseException) -> ModelUnavailable:
    return ModelUnavailable(
        f"Model {model_id!r} could not be loaded ({_first_line(error)}). It is not a local model "
        "directory or a cached download, and the Hugging Face Hub cannot be reached from here: " + how_to_get_a_model()
    )


def wrap(model: Any, tokenizer: Any, *, name: str, source: str = "", plan: DevicePlan | None = None) -> ModelHandle:
    """A handle around an already-built model (tests build tiny random ones in-process)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if plan is None:
        plan = plan_device(detect())
    model.eval()
    return ModelHandle(model=model, tokenizer=tokenizer, name=name, source=source, plan=plan)


_handle: ModelHandle | None = None
_handle_lock = threading.Lock()


@dataclass
class _BackgroundLoad:
    done: threading.Event = field(default_factory=threading.Event)
    error: ModelUnavailable | None = None


_loading: _BackgroundLoad | None = None


def load_in_background(settings: Settings | None = None) -> None:
    """Load the process-wide model in a thread; every `get_handle` call waits for it.

    Why: importing transformers' model code and reading the weights is about 4 s of the app's
    start (the first start's GGUF conversion much more). The app starts this once its server is
    up: pages, labels, datasets and RAG indexes need no model, and model calls queue meanwhile.
    """
    global _loading
    settings = settings or get_settings()
    model_id = configured_model_id(settings)
    loading = _BackgroundLoad()

    def run() -> None:
        global _handle
        try:
            handle = load_handle(model_id, settings, background=True)
            with _handle_lock:
                _handle = handle
        except ModelUnavailable as error:
            loading.error = error
        except Exception as error:  # noqa: BLE001 - a corrupt cache, say: report it like any load failure
            log.exception("loading the model failed")
            loading.error = ModelUnavailable(f"Model {model_id!r} could not be loaded ({_first_line(error)}).")
        finally:
            loading.done.set()

    with _handle_lock:
        _loading = loading
    threading.Thread(target=run, name="model-load", daemon=True).start()


def wait_for_handle(timeout: float | None = None) -> ModelHandle | None:
    """The process-wide model once a background load has finished (None on timeout).

    Raises the load's ModelUnavailable when it failed, so every caller sees the same reason.
    """
    loading = _loading
    if loading is not None:
        if not loading.done.wait(timeout):
            return None
        if loading.error is not None:
            raise loading.error
    return _handle


def get_handle() -> ModelHandle:
    """The process-wide base model: waits for a background load, or loads on first use."""
    global _handle
    handle = wait_for_handle()
    if handle is not None:
        return handle
    with _handle_lock:
        if _handle is None:
            _handle = load_handle()
        return _handle


def set_handle(handle: ModelHandle | None) -> None:
    """Install (or clear) the process-wide model; tests and the CLI use this."""
    global _handle, _loading
    with _handle_lock:
        _handle = handle
        _loading = None
