"""Keys and values of prompts already read, reused by later requests whose prompts start with the same tokens.

Why: a lesson's system prompt, a workshop's shared prompt, a comparison's prompt is read again by every
request that starts with it. On 2 cores a 500-token prefill takes about a second of the model's time, and
16 students asking at once wait for 16 of them in turn before the last one's first token. The continuous
batch already shares one prompt between the rows of one request (scheduler.py); this shares it across
requests and over time, as vLLM's automatic prefix caching and SGLang's RadixAttention do.

What it holds: whole prompts' caches exactly as their prefill left them (`[1, kv_heads, length, head_dim]`
per layer; no copy is made). A new prompt takes the longest common prefix with any entry (at least
`MIN_TOKENS`, and never its last token: that one is always fed, for the next-token logits), copies those
columns into its own cache and feeds only the rest. The keys and values of a position depend only on the
tokens up to it and on the weights, so the result is the prompt's own (up to float summation order: the
rest is fed as one chunk instead of several). Only the lean decoder's lane (the base model) uses it: an
adapter changes the keys and values, and the cache lives on the decoder, so new weights start empty.

Bounded by bytes (`PLAYGROUND_PREFIX_CACHE_MB`, 0 turns it off), least recently used out first; an entry
that another one extends is dropped (the longer one serves both).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

MIN_TOKENS = 16  # shorter shared prefixes cost less to feed again than to look up and copy

KV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class _Entry:
    ids: torch.Tensor  # the prompt's token ids [length]
    kv: KV
    nbytes: int


def _common(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0]) if len(differ) else n


@dataclass
class PrefixCache:
    """Prompt caches by their token ids, shared by every request the decoder serves (thread-safe: with
    batching off each request decodes in its own thread)."""

    max_bytes: int
    _entries: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    hits: int = 0
    reused_tokens: int = 0

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def _best(self, ids: Sequence[int]) -> tuple[int, int | None]:
        """(tokens reusable, the entry's key); call with the lock held."""
        if self.max_bytes <= 0 or len(ids) <= MIN_TOKENS or not self._entries:
            return 0, None
        wanted = torch.tensor(list(ids), dtype=torch.long)
        best, best_key = 0, None
        for key, entry in self._entries.items():
            shared = min(_common(wanted, entry.ids), len(ids) - 1)  # the last token is fed
            if shared > best:
                best, best_key = shared, key
        return (best, best_key) if best >= MIN_TOKENS else (0, None)

    def reusable(self, ids: Sequence[int]) -> int:
        """How many of the prompt's tokens `longest` would reuse now (0: none), without using them."""
        with self._lock:
            return self._best(ids)[0]

    def longest(self, ids: Sequence[int]) -> tuple[int, KV | None]:
        """(tokens reusable, the cache holding them) for a prompt `ids`; (0, None) when none is worth it."""
        with self._lock:
            best, key = self._best(ids)
            if key is None:
                return 0, None
            self._entries.move_to_end(key)
            self.hits += 1
            self.reused_tokens += best
            return best, self._entries[key].kv

    def add(self, ids: Sequence[int], kv: KV) -> None:
        """Keep a finished prompt's cache (`kv` covers exactly its `len(ids)` positions)."""
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if self.max_bytes <= 0 or len(ids) <= MIN_TOKENS or nbytes > self.max_bytes:
            return
        new = torch.tensor(list(ids), dtype=torch.long)
        with self._lock:
            for key, entry in list(self._entries.items()):
                shared = _common(new, entry.ids)
                if shared == len(new):  # an entry already holds all of it
                    self._entries.move_to_end(key)
                    return
                if shared == len(entry.ids):  # this one extends the entry: it serves both
                    del self._entries[key]
            self._entries[self._next] = _Entry(new, kv, nbytes)
            self._next += 1
            total = self.nbytes
            while total > self.max_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.nbytes
