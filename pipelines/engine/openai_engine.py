"""Remote engine: base-model requests answered by an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp).

`PLAYGROUND_ENGINE=openai` with `PLAYGROUND_OPENAI_BASE_URL` sends every request without an
adapter to the server: Generate to `/v1/completions`, anything built from a chat template to
`/v1/chat/completions` (the server applies its own template), both streamed with per-token
log-probabilities and alternatives. The local model stays loaded for what a server cannot do for
us: adapters, training, the reward model, the model's insides, and token counting.

Servers differ in what they accept beyond OpenAI's own parameters, and their defaults differ
from ours (llama.cpp samples with top-k 40, min-p 0.05 and a repetition penalty of 1.1 unless
told otherwise), so every knob a server supports is always sent, "off" included, and a knob it
does not support is refused before the request (`Server.unsupported`) rather than ignored.

The API key goes into the Authorization header and nowhere else: it is not in any message, log
line, `Server` field or anything sent to the browser.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from pipelines.config import OPENAI_SERVERS, redacted
from pipelines.engine.model_source import ModelUnavailable
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0
RETRY_BUDGET_SECONDS = 10.0  # the most a request waits, in all, for a busy or unreachable server before its first token
MAX_ATTEMPTS = 3
MAX_ALTERNATIVES = 20  # what we ask for; the probe finds how many the server gives
# the sampling knobs beyond OpenAI's own (temperature, top_p, seed, stop, max_tokens), by server kind:
# our name -> the server's parameter name
_HF_NAMES = {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty"}
_EXTRAS = {"vllm": _HF_NAMES, "sglang": _HF_NAMES, "llamacpp": {**_HF_NAMES, "repetition_penalty": "repeat_penalty"}}
EXTRA_KNOBS: dict[str, dict[str, str]] = {kind: _EXTRAS.get(kind, {}) for kind in OPENAI_SERVERS}
# servers known to accept logprobs=0 on /v1/completions (the sampled token's log-probability alone)
LOGPROBS_ZERO_SERVERS = ("vllm", "sglang", "llamacpp")
KNOB_OFF = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


class ServerError(ModelUnavailable):
    """The server refused, failed or went away; the message names the server and what happened."""

    exit_code = 1


@dataclass(frozen=True)
class TopToken:
    token: str
    logprob: float


@dataclass(frozen=True)
class RemoteToken:
    """One generated token as the server reported it (text, not an id: servers differ in tokenizers)."""

    token: str
    logprob: float | None
    top: tuple[TopToken, ...] = ()


@dataclass
class Piece:
    """One streamed chunk: new text, the tokens behind it (when the server sends log-probabilities), finish."""

    text: str = ""
    tokens: list[RemoteToken] = field(default_factory=list)
    finish_reason: str | None = None  # the server's: "stop" | "length" | ...
    stop_reason: Any = None  # vLLM/SGLang: the stop string that ended it (None: end of sequence)
    stop_reason_given: bool = False  # whether the server sends stop_reason at all


@dataclass(frozen=True)
class Server:
    """What the start-up probe found out about the server."""

    base_url: str  # redacted: safe to show
    model: str
    kind: str
    context_window: int | None  # None: the server does not say
    alternatives: int  # alternatives per token it returns on /v1/completions (0: no log-probabilities)
    chat_alternatives: int  # the same on /v1/chat/completions

    def unsupported(self) -> dict[str, str]:
        """Sampling knobs this server cannot honour -> why (the UI disables them, requests refuse them)."""
        known = EXTRA_KNOBS[self.kind]
        standard = "takes only OpenAI's standard sampling parameters"
        if self.kind == "openai":
            why = f"the server at {self.base_url} {standard} (set PLAYGROUND_OPENAI_SERVER if it is vLLM, SGLang or llama.cpp)"
        else:
            why = f"{self.kind}'s OpenAI API {standard}"
        return {name: why for name in KNOB_OFF if name not in known}

    def describe(self) -> str:
        window = f"context {self.context_window:,} tokens" if self.context_window else "context length not reported"
        return (
            f"{self.model} on a {self.kind} server at {self.base_url} · {window} · "
            f"{self.alternatives} alternatives per token (chat {self.chat_alternatives})"
        )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.read()
        data = json.loads(body)
        if isinstance(data, dict):
            error = data.get("error", data.get("message", data.get("detail", data)))
            if isinstance(error, dict):
                error = error.get("message", error)
            return str(error)[:300]
        return str(data)[:300]
    except Exception:  # noqa: BLE001 - any body at all: show what we can
        try:
            return response.text[:300]
        except Exception:  # noqa: BLE001
            return ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _top(entries: Any) -> tuple[TopToken, ...]:
    """Alternatives in either shape: {"token": logprob} (completions) or [{"token", "logprob"}] (chat)."""
    if isinstance(entries, dict):
        pairs = [(str(k), v) for k, v in entries.items()]
    elif isinstance(entries, list):
        pairs = [(str(e.get("token", "")), e.get("logprob")) for e in entries if isinstance(e, dict)]
    else:
        return ()
    out = [TopToken(t, float(v)) for t, v in pairs if isinstance(v, (int, float)) and math.isfinite(v)]
    return tuple(sorted(out, key=lambda t: -t.logprob))


def _logprob(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def parse_choice(choice: dict[str, Any], chat: bool) -> Piece:
    """One streamed choice of either endpoint, in the shapes vLLM, SGLang, TGI and llama.cpp send."""
    if not isinstance(choice, dict):
        raise ValueError("a choice is not an object")
    piece = Piece(
        finish_reason=choice.get("finish_reason"),
        stop_reason=choice.get("stop_reason"),
        stop_reason_given="stop_reason" in choice,
    )
    if chat:
        delta = choice.get("delta") or {}
        piece.text = str(delta.get("content") or "")
    else:
        piece.text = str(choice.get("text") or "")
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        content = logprobs.get("content")
        if isinstance(content, list):  # the chat shape: one entry per token
            for entry in content:
                if isinstance(entry, dict):
                    piece.tokens.append(
                        RemoteToken(
                            str(entry.get("token", "")), _logprob(entry.get("logprob")), _top(entry.get("top_logprobs"))
                        )
                    )
        elif isinstance(logprobs.get("tokens"), list):  # the completions shape: parallel lists
            tokens = logprobs["tokens"]
            values = logprobs.get("token_logprobs") or [None] * len(tokens)
            tops = logprobs.get("top_logprobs") or [None] * len(tokens)
            for token, value, top in zip(tokens, values, tops, strict=False):
                piece.tokens.append(RemoteToken(str(token), _logprob(value), _top(top)))
    return piece


class OpenAIEngine:
    """A client of one server: the probe, request bodies, and streams that end in one clear error."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        kind: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # credentials in the URL (a proxy's basic auth) become an auth header: request URLs, which
        # httpx logs, never carry them
        parts = urlsplit(base_url)
        auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        self.base_url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/")
        self.timeout = timeout
        self.shown_url = redacted(self.base_url)
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=CONNECT_SECONDS),
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            auth=None if api_key else auth,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),  # one stream per row
        )
        self.wanted_model = model
        self.wanted_kind = kind
        self.server: Server | None = None
        self._alternatives: dict[str, list[tuple[str, float]]] = {}  # recent inspector answers, by prompt
        self._info_cache: dict[str, Any] | None = None  # TGI's /info, once asked

    def __repr__(self) -> str:  # never the key
        return f"OpenAIEngine({self.shown_url!r})"

    def close(self) -> None:
        self.client.close()

    # --- the probe -------------------------------------------------------------------------

    def probe(self) -> Server:
        """Reach the server once: its models, which one to use, its kind, window and alternatives."""
        url = f"{self.base_url}/models"
        try:
            response = self.client.get(url, timeout=httpx.Timeout(min(self.timeout, 10.0), connect=CONNECT_SECONDS))
        except httpx.HTTPError as error:
            raise ServerError(
                f"PLAYGROUND_OPENAI_BASE_URL: cannot reach the server at {self.shown_url} ({_reason(error)})"
            ) from error
        if response.status_code in (401, 403):
            raise ServerError(
                f"the server at {self.shown_url} refused the API key (HTTP {response.status_code}): "
                "check PLAYGROUND_OPENAI_API_KEY"
            )
        if response.status_code != 200:
            raise ServerError(
                f"the server at {self.shown_url} answered GET /models with HTTP {response.status_code}: "
                f"{_error_text(response)} (is PLAYGROUND_OPENAI_BASE_URL the API root, ending in /v1?)"
            )
        try:
            entries = [e for e in response.json().get("data", []) if isinstance(e, dict) and e.get("id")]
        except (ValueError, AttributeError) as error:
            raise ServerError(
                f"the server at {self.shown_url} sent a /models answer that is not a model list"
            ) from error
        ids = tuple(str(e["id"]) for e in entries)
        if not ids:
            raise ServerError(f"the server at {self.shown_url} serves no model (GET /models is empty)")
        model = self.wanted_model or ids[0]
        if model not in ids:
            raise ServerError(
                f"PLAYGROUND_OPENAI_MODEL={model!r} is not served at {self.shown_url}; it serves: {', '.join(ids[:10])}"
            )
        entry = entries[ids.index(model)]
        kind = self.wanted_kind or self._kind(entry)
        window = _int(entry.get("max_model_len")) or _int((entry.get("meta") or {}).get("n_ctx_train"))
        if kind == "tgi" and window is None:
            window = _int(self._info().get("max_total_tokens"))
        alternatives = self._count_alternatives(model, chat=False)
        chat_alternatives = self._count_alternatives(model, chat=True)
        self.server = Server(self.shown_url, model, kind, window, alternatives, chat_alternatives)
        log.info("remote engine: %s", self.server.describe())
        return self.server

    def _kind(self, entry: dict[str, Any]) -> str:
        owner = str(entry.get("owned_by", "")).lower()
        if owner in ("vllm", "sglang", "llamacpp"):
            return owner
        if owner == "me":  # llama-cpp-python's server
            return "llamacpp"
        if self._info().get("router") or "max_total_tokens" in self._info():
            return "tgi"
        return "openai"

    def _info(self) -> dict[str, Any]:
        """TGI's /info (next to /v1), fetched once; {} for servers that have none."""
        if self._info_cache is None:
            root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
            try:
                response = self.client.get(f"{root}/info", timeout=CONNECT_SECONDS)
                data = response.json() if response.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                data = {}
            self._info_cache = data if isinstance(data, dict) else {}
        return self._info_cache

    def _count_alternatives(self, model: str, *, chat: bool) -> int:
        """Ask for a one-token answer with MAX_ALTERNATIVES alternatives, then 5: how many come back."""
        for wanted in (MAX_ALTERNATIVES, 5):
            try:
                pieces = list(self._stream(self._probe_body(model, chat, wanted), chat=chat, retries=False))
            except ServerError as error:
                log.info(
                    "the server refused %d alternatives on %s: %s", wanted, "chat" if chat else "completions", error
                )
                continue
            tops = [len(t.top) for p in pieces for t in p.tokens]
            return min(max(tops, default=0), wanted)
        return 0

    def _probe_body(self, model: str, chat: bool, alternatives: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "max_tokens": 1, "temperature": 0, "stream": True}
        if chat:
            body.update(messages=[{"role": "user", "content": "Hi"}], logprobs=True, top_logprobs=alternatives)
        else:
            body.update(prompt="Hello", logprobs=alternatives)
        return body

    # --- requests --------------------------------------------------------------------------

    def check(self, params: SamplingParams) -> None:
        """Refuse a knob the server cannot honour, naming it, instead of sampling something else."""
        assert self.server is not None
        for name, why in self.server.unsupported().items():
            if getattr(params, name) != KNOB_OFF[name]:
                raise InvalidParameter(name, f"is not available on this engine: {why}")

    def body(
        self,
        params: SamplingParams,
        *,
        seed: int,
        prompt: str | None = None,
        messages: Sequence[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The request for one row: its prompt (or messages), every supported knob, alternatives.

        `max_tokens`: the row's budget once fitted into the context window (default: the params').
        """
        assert self.server is not None
        self.check(params)
        body: dict[str, Any] = {
            "model": self.server.model,
            "stream": True,
            "max_tokens": max_tokens or params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        for ours, theirs in EXTRA_KNOBS[self.server.kind].items():
            body[theirs] = getattr(params, ours)
        if messages is not None:
            body["messages"] = list(messages)
            if self.server.chat_alternatives:
                body.update(logprobs=True, top_logprobs=self.server.chat_alternatives)
            elif self.server.kind != "openai":
                body["logprobs"] = True
        else:
            body["prompt"] = prompt
            if self.server.alternatives or self.server.kind in LOGPROBS_ZERO_SERVERS:
                body["logprobs"] = self.server.alternatives  # 0: the sampled token's log-probability only
        return body

    def next_alternatives(self, prompt: str) -> list[tuple[str, float]]:
        """The server's top alternatives (and the greedy token) for the token after `prompt`, at T = 1."""
        assert self.server is not None
        cached = self._alternatives.get(prompt)
        if cached is not None:
            return cached
        # one greedy token with every filter off: the alternatives are the model's at T = 1
        body = self.body(SamplingParams(max_new_tokens=1, temperature=0), seed=0, prompt=prompt)
        tokens = [t for piece in self._stream(body, chat=False) for t in piece.tokens]
        found: dict[str, float] = {}
        if tokens:
            found = {t.token: t.logprob for t in tokens[0].top}
            if tokens[0].logprob is not None:
                found.setdefault(tokens[0].token, tokens[0].logprob)
        top = sorted(found.items(), key=lambda kv: -kv[1])
        self._alternatives[prompt] = top
        if len(self._alternatives) > 32:
            self._alternatives.pop(next(iter(self._alternatives)))
        return top

    def stream(self, body: dict[str, Any], cancel: threading.Event | None = None) -> Iterator[Piece]:
        """The pieces of one streamed request; one ServerError (naming the server) ends it on any failure."""
        return self._stream(body, chat="messages" in body, cancel=cancel)

    def _stream(
        self, body: dict[str, Any], *, chat: bool, cancel: threading.Event | None = None, retries: bool = True
    ) -> Iterator[Piece]:
        url = f"{self.base_url}/{'chat/completions' if chat else 'completions'}"
        deadline = time.monotonic() + RETRY_BUDGET_SECONDS
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                with self.client.stream("POST", url, json=body) as response:
                    if response.status_code == 429 or response.status_code >= 500:
                        after = _retry_after(response)
                        wait = after if after is not None else 0.5 * attempt
                        reason = f"HTTP {response.status_code}: {_error_text(response)}"
                        if after is not None:
                            reason += f"; it asks to retry after {after:g} s"
                    elif response.status_code != 200:
                        raise ServerError(
                            f"the server at {self.shown_url} refused the request (HTTP {response.status_code}): "
                            f"{_error_text(response)}"
                        )
                    else:
                        yield from self._pieces(response, chat, cancel)
                        return
            except httpx.ConnectError as error:
                wait, reason = 0.5 * attempt, f"cannot connect: {_reason(error)}"
            except httpx.TimeoutException as error:
                raise ServerError(
                    f"the server at {self.shown_url} did not answer in time ({type(error).__name__})"
                ) from error
            if (
                not retries
                or attempt >= MAX_ATTEMPTS
                or time.monotonic() + wait > deadline
                or (cancel and cancel.is_set())
            ):
                raise ServerError(f"the server at {self.shown_url} could not take the request ({reason})")
            log.info("retrying the request to %s in %.1f s (%s)", self.shown_url, wait, reason)
            if cancel is not None and cancel.wait(wait):
                return
            if cancel is None:
                time.sleep(wait)

    def _pieces(self, response: httpx.Response, chat: bool, cancel: threading.Event | None) -> Iterator[Piece]:
        """Server-sent events until [DONE] or a finish reason; a cut stream or a bad chunk is a ServerError."""
        tokens = 0
        finished = False
        try:
            for line in response.iter_lines():
                if cancel is not None and cancel.is_set():
                    return
                if not line.startswith("data:"):
                    continue  # comments, event names, keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                    if "error" in chunk and not chunk.get("choices"):
                        error = chunk["error"]
                        raise ServerError(
                            f"the server at {self.shown_url} failed mid-stream after {tokens} tokens: "
                            f"{error.get('message', error) if isinstance(error, dict) else error}"
                        )
                    choices = chunk.get("choices") or []
                    piece = parse_choice(choices[0], chat) if choices else Piece()
                except ServerError:
                    raise
                except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
                    raise ServerError(
                        f"the server at {self.shown_url} sent a malformed chunk after {tokens} tokens "
                        f"({type(error).__name__}: {str(error)[:120]}): {data[:120]!r}"
                    ) from error
                tokens += len(piece.tokens)
                finished = finished or piece.finish_reason is not None
                yield piece
        except httpx.TimeoutException as error:
            raise ServerError(
                f"the server at {self.shown_url} stopped sending for too long after {tokens} tokens ({type(error).__name__})"
            ) from error
        except httpx.HTTPError as error:
            raise ServerError(
                f"the server at {self.shown_url} closed the stream after {tokens} tokens ({_reason(error)})"
            ) from error
        if not finished:
            hint = (
                " (llama-cpp-python's server ends a running stream this way when another request arrives, unless "
                "it is started with --interrupt_requests False)"
                if self.server is not None and self.server.kind == "llamacpp"
                else ""
            )
            raise ServerError(
                f"the server at {self.shown_url} ended the stream after {tokens} tokens without finishing it{hint}"
            )


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and value > 0 else None
