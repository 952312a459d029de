"""Settings read once from the environment.

Everything a deployment changes (where state lives, which model, which device, who may do what)
comes from environment variables so the same code runs on a laptop, in CI and on a Space.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import overload
from urllib.parse import urlsplit, urlunsplit

from pipelines.errors import ConfigError
from pipelines.gpu import on_zero_gpu

# What ships with the code: sample datasets, presets, teaching texts (one place, for pipelines and UI).
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DATASETS = ASSETS / "datasets"
PREFERENCE_SAMPLE = DATASETS / "preference_pairs.jsonl"
BUNDLED_MODEL = "bundled:smollm2"
HUB_FALLBACK_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPENAI_SERVERS = ("vllm", "sglang", "tgi", "llamacpp", "openai")


@dataclass(frozen=True)
class Variable:
    """One environment variable: declared here once, read through `env`, documented from this
    (docs/reference/configuration.md is generated: `make docs`; a test keeps it in step)."""

    name: str
    group: str
    default: str  # as people read it (Markdown)
    help: str  # what it does (Markdown)


VARIABLES: tuple[Variable, ...] = (
    # --- Where it runs
    Variable(
        "PLAYGROUND_DATA_DIR",
        "Where it runs",
        "`./data`",
        "all runtime state (converted models, labels, adapters, indexes, jobs)",
    ),
    Variable(
        "PLAYGROUND_HOST",
        "Where it runs",
        "`127.0.0.1`",
        "bind address; also honours `GRADIO_SERVER_NAME` (Spaces sets `0.0.0.0`)",
    ),
    Variable("PLAYGROUND_PORT", "Where it runs", "`7860`", "port; also honours `GRADIO_SERVER_PORT`"),
    Variable("PLAYGROUND_DEVICE", "Where it runs", "`auto`", "`cpu`, `cuda` or `mps`; `auto` takes the best available"),
    Variable(
        "PLAYGROUND_DTYPE",
        "Where it runs",
        "`auto`",
        "`float32`, `bfloat16`, `float16`; `auto` = fp32 on CPU, bf16 (or fp16) on GPU",
    ),
    Variable("PLAYGROUND_THREADS", "Where it runs", "all usable cores (max 16)", "CPU threads for torch"),
    Variable(
        "PLAYGROUND_MAX_UPLOAD_MB",
        "Where it runs",
        "`200`",
        "largest upload the server accepts (each tab also checks type, count and its own size limit)",
    ),
    Variable(
        "PLAYGROUND_PHONE_REGION",
        "Where it runs",
        "`US`",
        "the country (ISO code, e.g. `GB`, `DE`) whose phone numbers the personal-data check reads in uploads "
        "when a number is written without its +country code",
    ),
    # --- Model and engine
    Variable(
        "PLAYGROUND_MODEL",
        "Model and engine",
        "bundled SmolLM2-135M-Instruct",
        "any Hub id (needs network or a cached copy) or a local model directory",
    ),
    Variable(
        "PLAYGROUND_FAST",
        "Model and engine",
        "`1`",
        "on an x86 CPU with AVX2, base-model generation runs through the lean fp16 decoder (~3× transformers here, near-fp32 logits; docs/performance.md); `0`: transformers in fp32 for everything",
    ),
    Variable(
        "PLAYGROUND_ENGINE",
        "Model and engine",
        "`torch`",
        "`llamacpp`: base-model generation and chat run on the GGUF file through llama.cpp (~5× faster here; install with `make llamacpp`, docs/performance.md). Adapters, the inspector and all training stay on torch; `openai`: requests without an adapter go to an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp), docs/deploy.md",
    ),
    Variable(
        "PLAYGROUND_BATCHING",
        "Model and engine",
        "`1`",
        "`0`: every request decodes on its own, interleaved step by step with the others under the model lock, at most 4 at once (the behaviour before the scheduler, and always the llama.cpp engine's; `bench/serve_bench.py --baseline` measures it)",
    ),
    Variable(
        "PLAYGROUND_BATCH_ROWS",
        "Model and engine",
        "`16`",
        "continuous batching: rows decoded together in one forward pass per lane (base model on the fp16 decoder; adapters on transformers). Every request of every tab and session joins the running batch; more rows wait in the queue. Each row costs KV-cache memory (~46 KB per token for the bundled model)",
    ),
    Variable(
        "PLAYGROUND_BATCH_QUEUE",
        "Model and engine",
        "`64`",
        'requests that may wait for a decoding slot, each shown its place ("⏳ Waiting for a free slot… 3 requests ahead"); one more is refused with a message saying the model is busy',
    ),
    Variable(
        "PLAYGROUND_PREFIX_CACHE_MB",
        "Model and engine",
        "`128`",
        "keys and values of prompts already read, kept for later requests that start with the same tokens (a lesson's or workshop's system prompt is read once, not by every request); least recently used out first; `0` turns it off. The lean CPU decoder's base-model requests only",
    ),
    # --- A serving engine (PLAYGROUND_ENGINE=openai)
    Variable(
        "PLAYGROUND_OPENAI_BASE_URL",
        "A serving engine (PLAYGROUND_ENGINE=openai)",
        "—",
        "with `PLAYGROUND_ENGINE=openai` (required): the server's API root, e.g. `http://gpu-box:8000/v1`. Set by the operator only: nothing in the UI or API changes it",
    ),
    Variable(
        "PLAYGROUND_OPENAI_API_KEY",
        "A serving engine (PLAYGROUND_ENGINE=openai)",
        "none",
        "sent as `Authorization: Bearer …` and nowhere else: never shown, logged or sent to the browser (credentials written into the base URL, `http://user:pw@host/v1`, become a basic-auth header the same way and are cut from every URL shown or logged)",
    ),
    Variable(
        "PLAYGROUND_OPENAI_MODEL",
        "A serving engine (PLAYGROUND_ENGINE=openai)",
        "the first id of `/v1/models`",
        "which served model to use; an id the server does not list is refused, naming the ones it does",
    ),
    Variable(
        "PLAYGROUND_OPENAI_SERVER",
        "A serving engine (PLAYGROUND_ENGINE=openai)",
        "probed",
        "`vllm`, `sglang`, `tgi`, `llamacpp` or `openai`: which parameters beyond OpenAI's the server takes (probed from `/v1/models`' `owned_by` and TGI's `/info`)",
    ),
    Variable(
        "PLAYGROUND_OPENAI_TIMEOUT",
        "A serving engine (PLAYGROUND_ENGINE=openai)",
        "`60`",
        "seconds to wait for the server's answer and for each next streamed chunk",
    ),
    # --- Storage and backups
    Variable(
        "PLAYGROUND_DATABASE_URL",
        "Storage and backups",
        "SQLite (WAL) at `data/playground.db`",
        "any SQLAlchemy URL, e.g. PostgreSQL for several app replicas",
    ),
    Variable(
        "PLAYGROUND_BACKUP_DIR",
        "Storage and backups",
        "off",
        "a directory (a mounted bucket, another disk) that receives a consistent snapshot of the SQLite database and the labels' trl exports; restored from on start when the local database is empty (docs/deploy.md)",
    ),
    Variable(
        "PLAYGROUND_BACKUP_REPO",
        "Storage and backups",
        "off",
        "the same into a Hub dataset repository, e.g. `you/class-labels` (created private; needs `HF_TOKEN` with write access; `HF_ENDPOINT` for a mirror)",
    ),
    Variable(
        "PLAYGROUND_BACKUP_INTERVAL",
        "Storage and backups",
        "`300`",
        "seconds between snapshots (at least 10); one is skipped when nothing changed, and one more is taken when the app stops (SIGTERM)",
    ),
    Variable(
        "PLAYGROUND_BACKUP_KEEP",
        "Storage and backups",
        "`10`",
        "snapshots kept in `PLAYGROUND_BACKUP_DIR` (the Hub repository keeps every one in its history)",
    ),
    # --- Training
    Variable("PLAYGROUND_MAX_JOBS", "Training", "`1`", "training jobs that may run at once; the rest wait in a queue"),
    Variable(
        "PLAYGROUND_TRAIN_PRECISION",
        "Training",
        "`auto`",
        "mixed precision of every training job: `auto` follows the hardware (bf16 on GPUs that have it, fp16 on other GPUs, bf16 autocast on CPUs with native bf16, fp32 otherwise); `fp32`, `bf16` or `fp16` force a plan (fp16 needs a GPU). The job log names the plan used",
    ),
    # --- Access and visitors
    Variable(
        "PLAYGROUND_AUTH",
        "Access and visitors",
        "off",
        "sign-in: `alice:pw1,bob:pw2`, or the path of a file with one `user:password` per line (on a Space, `hf_oauth: true` signs people in with their Hugging Face account instead)",
    ),
    Variable(
        "PLAYGROUND_ADMINS",
        "Access and visitors",
        "everyone",
        "comma-separated user names that may start training, cancel jobs, delete data and export; with sign-in on and this empty, every signed-in user may",
    ),
    Variable(
        "PLAYGROUND_ANONYMOUS_LABELS",
        "Access and visitors",
        "off",
        "`1`: with sign-in on, visitors who are not signed in may label the items of label drives (a public drive; a label records `anon:` and a keyed hash of the visitor's server-made id, shown to others as an alias); they stay read-only otherwise, and cannot create items, prompt sets or chat-reply labels",
    ),
    Variable(
        "PLAYGROUND_MCP",
        "Access and visitors",
        "off",
        "`1`: also serve the read-only tools (generate, chat, next-token distribution, score, perplexity, tokenize, RAG ask, reasoning compare) over MCP at `/gradio_api/mcp/`, under the app's access rules: with `PLAYGROUND_AUTH`, callers sign in with HTTP Basic; training, labelling and uploads are never exposed ([agents](../agents.md))",
    ),
    Variable(
        "PLAYGROUND_ANON_HOLDS_PER_ADDRESS",
        "Access and visitors",
        "`10`",
        "public drives: the most items anonymous visitors from one client address may hold at once",
    ),
    Variable(
        "PLAYGROUND_ANON_VISITORS_PER_HOUR",
        "Access and visitors",
        "`30`",
        "public drives: the most new anonymous annotators one client address may bring in an hour",
    ),
    Variable(
        "PLAYGROUND_PROXY_HOPS",
        "Access and visitors",
        "`0` (`1` on a Space)",
        "reverse proxies in front of the app: the client address (sign-in throttling, the anonymous caps) is read from `X-Forwarded-For` only then, from the right; uvicorn's own rewrite of it is turned off (it trusted the header from any local client)",
    ),
    Variable(
        "PLAYGROUND_SECRET_KEY",
        "Access and visitors",
        "a random key in `data/secret.key` (mode 600)",
        "signs the visitor cookie and keys the stored ids; set the same value on replicas that share a database so a visitor keeps one identity on all of them",
    ),
)
_DECLARED = {v.name for v in VARIABLES}


def env(name: str) -> str | None:
    """A declared variable's value (None when unset or empty); an undeclared name is a bug, refused."""
    if name not in _DECLARED:
        raise KeyError(f"{name} is not declared in pipelines.config.VARIABLES")
    return os.environ.get(name) or None


def redacted(url: str) -> str:
    """A URL as it may be shown or logged: without any user:password@ part, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


@overload
def _env(name: str) -> str | None: ...
@overload
def _env(name: str, default: str) -> str: ...
def _env(name: str, default: str | None = None) -> str | None:
    """`env`, or the host platform's own variables (GRADIO_SERVER_NAME, SPACE_ID), with a default."""
    value = env(name) if name.startswith("PLAYGROUND_") else os.environ.get(name)
    return value if value else default


def _default_host() -> str:
    # Spaces (and Docker images built for them) set GRADIO_SERVER_NAME=0.0.0.0; a laptop must not
    # expose the app to its network unless asked to.
    return _env("PLAYGROUND_HOST") or _env("GRADIO_SERVER_NAME") or "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("PLAYGROUND_DATA_DIR", "data")).resolve())
    model: str | None = field(default_factory=lambda: _env("PLAYGROUND_MODEL"))
    device: str = field(default_factory=lambda: _env("PLAYGROUND_DEVICE", "auto"))
    dtype: str = field(default_factory=lambda: _env("PLAYGROUND_DTYPE", "auto"))
    threads: int | None = field(default_factory=lambda: int(v) if (v := _env("PLAYGROUND_THREADS")) else None)
    host: str = field(default_factory=_default_host)
    port: int = field(default_factory=lambda: int(_env("PLAYGROUND_PORT") or _env("GRADIO_SERVER_PORT") or 7860))
    database_url: str | None = field(default_factory=lambda: _env("PLAYGROUND_DATABASE_URL"))
    # snapshots of the SQLite database (and the labels' trl exports) for a disk that does not survive
    # a restart (a Space): a directory (a mounted bucket) and/or a Hub dataset repository (HF_TOKEN);
    # every `backup_interval` seconds when something changed, restored on start into an empty database
    backup_dir: Path | None = field(
        default_factory=lambda: Path(v).resolve() if (v := _env("PLAYGROUND_BACKUP_DIR")) else None
    )
    backup_repo: str | None = field(default_factory=lambda: _env("PLAYGROUND_BACKUP_REPO"))
    backup_interval: float = field(default_factory=lambda: float(_env("PLAYGROUND_BACKUP_INTERVAL", "300")))
    backup_keep: int = field(default_factory=lambda: int(_env("PLAYGROUND_BACKUP_KEEP", "10")))
    # the largest single upload the server accepts (handlers apply tighter per-kind limits)
    max_upload_mb: int = field(default_factory=lambda: int(_env("PLAYGROUND_MAX_UPLOAD_MB", "200")))
    phone_region: str = field(default_factory=lambda: _env("PLAYGROUND_PHONE_REGION", "US").strip().upper())
    max_jobs: int = field(default_factory=lambda: int(_env("PLAYGROUND_MAX_JOBS", "1")))
    # base-model decoding on CPU through the lean fp16 decoder (pipelines/engine/fast_decode.py): ~3x
    # transformers' fp32 `generate` here at near-fp32 logits; "0" decodes through transformers in fp32
    fast: bool = field(
        default_factory=lambda: (_env("PLAYGROUND_FAST", "1") or "1").lower() in {"1", "true", "yes", "on"}
    )
    # "llamacpp": base-model forward passes run on the GGUF file through llama-cpp-python (optional
    # install, `make llamacpp`); adapters and training stay on torch either way
    engine: str = field(
        default_factory=lambda: (_env("PLAYGROUND_ENGINE", "torch") or "torch")
        .lower()
        .replace("-", "")
        .replace(".", "")
    )
    # "openai": base-model requests go to an OpenAI-compatible server (pipelines/engine/openai_engine.py); set by
    # the operator only, never by a visitor. The key is sent as a bearer token and never shown.
    openai_base_url: str | None = field(default_factory=lambda: _env("PLAYGROUND_OPENAI_BASE_URL"))
    openai_api_key: str | None = field(default_factory=lambda: _env("PLAYGROUND_OPENAI_API_KEY"), repr=False)
    openai_model: str | None = field(default_factory=lambda: _env("PLAYGROUND_OPENAI_MODEL"))
    # vllm | sglang | tgi | llamacpp | openai: which parameters beyond OpenAI's the server takes (default: probed)
    openai_server: str | None = field(
        default_factory=lambda: (v.lower() if (v := _env("PLAYGROUND_OPENAI_SERVER")) else None)
    )
    # the longest wait for the server's next streamed chunk (or its answer), in seconds
    openai_timeout: float = field(default_factory=lambda: float(_env("PLAYGROUND_OPENAI_TIMEOUT", "60")))
    # continuous batching (pipelines/engine/scheduler.py): every request's rows join one running batch of at
    # most `batch_rows` rows per lane; `batch_queue` requests may wait for a slot, more are refused;
    # PLAYGROUND_BATCHING=0 decodes each request on its own, as before the scheduler
    batching: bool = field(
        # off by default on ZeroGPU: the scheduler's thread decodes outside any request's GPU call
        default_factory=lambda: (_env("PLAYGROUND_BATCHING", "0" if on_zero_gpu() else "1")).lower()
        in {"1", "true", "yes", "on"}
    )
    batch_rows: int = field(default_factory=lambda: int(_env("PLAYGROUND_BATCH_ROWS", "16")))
    batch_queue: int = field(default_factory=lambda: int(_env("PLAYGROUND_BATCH_QUEUE", "64")))
    # keys and values of prompts already read, reused by later requests that start with the same tokens (a
    # lesson's system prompt): at most this many MB (pipelines/engine/prefix_cache.py); 0 turns it off
    prefix_cache_mb: int = field(default_factory=lambda: int(_env("PLAYGROUND_PREFIX_CACHE_MB", "128")))
    # how many reverse proxies stand between visitors and the app (a Space: 1, its own proxy); the client's
    # address, which sign-in throttling and the anonymous caps count, is read from X-Forwarded-For only then
    proxy_hops: int = field(
        default_factory=lambda: int(_env("PLAYGROUND_PROXY_HOPS") or (1 if _env("SPACE_ID") else 0))
    )
    # public label drives (PLAYGROUND_ANONYMOUS_LABELS): the most items anonymous visitors from one address
    # may hold at once, and the most new anonymous annotators one address may bring in an hour
    anon_holds_per_address: int = field(default_factory=lambda: int(_env("PLAYGROUND_ANON_HOLDS_PER_ADDRESS", "10")))
    anon_visitors_per_hour: int = field(default_factory=lambda: int(_env("PLAYGROUND_ANON_VISITORS_PER_HOUR", "30")))
    # the read-only tools served over MCP (playground/mcp.py)
    mcp: bool = field(
        default_factory=lambda: (_env("PLAYGROUND_MCP") or "").strip().lower() in {"1", "true", "yes", "on"}
    )
    # mixed precision of training jobs: "auto" follows the hardware (pipelines.engine.hardware.train_precision);
    # "fp32" / "bf16" / "fp16" force a plan (tests run every plan whatever the host CPU has)
    train_precision: str = field(default_factory=lambda: (_env("PLAYGROUND_TRAIN_PRECISION", "auto") or "auto").lower())

    def __post_init__(self) -> None:
        if self.device not in {"auto", "cpu", "cuda", "mps"}:
            raise ConfigError(f"PLAYGROUND_DEVICE must be auto, cpu, cuda or mps, got {self.device!r}")
        if self.dtype not in {"auto", "float32", "bfloat16", "float16"}:
            raise ConfigError(f"PLAYGROUND_DTYPE must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.train_precision not in TRAIN_PRECISIONS:
            raise ConfigError(
                f"PLAYGROUND_TRAIN_PRECISION must be {', '.join(TRAIN_PRECISIONS)}, got {self.train_precision!r}"
            )
        if self.engine not in {"torch", "llamacpp", "openai"}:
            raise ConfigError(f"PLAYGROUND_ENGINE must be torch, llamacpp or openai, got {self.engine!r}")
        if self.engine == "openai" and not self.openai_base_url:
            raise ConfigError(
                "PLAYGROUND_ENGINE=openai needs PLAYGROUND_OPENAI_BASE_URL, the server's API root (e.g. http://gpu-box:8000/v1)"
            )
        if self.openai_base_url is not None and urlsplit(self.openai_base_url).scheme not in {"http", "https"}:
            raise ConfigError(
                f"PLAYGROUND_OPENAI_BASE_URL must be an http:// or https:// URL, got {redacted(self.openai_base_url)!r}"
            )
        if self.openai_server is not None and self.openai_server not in OPENAI_SERVERS:
            raise ConfigError(
                f"PLAYGROUND_OPENAI_SERVER must be one of {', '.join(OPENAI_SERVERS)}, got {self.openai_server!r}"
            )
        if not self.openai_timeout > 0:
            raise ConfigError(
                f"PLAYGROUND_OPENAI_TIMEOUT must be a positive number of seconds, got {self.openai_timeout:g}"
            )
        if not (len(self.phone_region) == 2 and self.phone_region.isalpha()):
            raise ConfigError(
                f"PLAYGROUND_PHONE_REGION must be a two-letter country code (US, GB, DE), got {self.phone_region!r}"
            )
        if self.max_upload_mb < 1:
            raise ConfigError(f"PLAYGROUND_MAX_UPLOAD_MB must be at least 1, got {self.max_upload_mb}")
        if self.max_jobs < 1:
            raise ConfigError(f"PLAYGROUND_MAX_JOBS must be at least 1, got {self.max_jobs}")
        if self.batch_rows < 1:
            raise ConfigError(f"PLAYGROUND_BATCH_ROWS must be at least 1, got {self.batch_rows}")
        if self.batch_queue < 1:
            raise ConfigError(f"PLAYGROUND_BATCH_QUEUE must be at least 1, got {self.batch_queue}")
        if self.prefix_cache_mb < 0:
            raise ConfigError(f"PLAYGROUND_PREFIX_CACHE_MB must be 0 (off) or more, got {self.prefix_cache_mb}")
        if self.backup_interval < 10:
            raise ConfigError(f"PLAYGROUND_BACKUP_INTERVAL must be at least 10 (seconds), got {self.backup_interval:g}")
        if self.backup_keep < 1:
            raise ConfigError(f"PLAYGROUND_BACKUP_KEEP must be at least 1, got {self.backup_keep}")
        if self.backup_repo is not None and self.backup_repo.count("/") != 1:
            raise ConfigError(
                f"PLAYGROUND_BACKUP_REPO must be a Hub dataset id like user/labels, got {self.backup_repo!r}"
            )
        if not 0 <= self.proxy_hops <= 10:
            raise ConfigError(f"PLAYGROUND_PROXY_HOPS must be between 0 and 10, got {self.proxy_hops}")
        if self.anon_holds_per_address < 1:
            raise ConfigError(
                f"PLAYGROUND_ANON_HOLDS_PER_ADDRESS must be at least 1, got {self.anon_holds_per_address}"
            )
        if self.anon_visitors_per_hour < 1:
            raise ConfigError(
                f"PLAYGROUND_ANON_VISITORS_PER_HOUR must be at least 1, got {self.anon_visitors_per_hour}"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"PLAYGROUND_THREADS must be at least 1, got {self.threads}")

    def path(self, *parts: str) -> Path:
        """A path under the data directory, its parent created."""
        target = self.data_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
