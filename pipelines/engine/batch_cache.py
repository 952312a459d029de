"""The running batch's KV cache, one per engine: rows that joined at different times share one timeline.

Continuous batching (pipelines/engine/scheduler.py) needs rows of different ages in one forward pass. Both
caches here keep every row on one column timeline of length `end`: the next token of every row is
written at column `end`, each row with its own position id, and a per-row key mask hides the
columns before the row joined (the same left padding a static batch uses). A row joins by
prefilling its prompt alone (in chunks, so the rows already decoding are not stalled for long) and
copying the prompt's keys and values into columns [end - P, end) of a new batch row; when the
prompt is longer than the timeline, the timeline is shifted right first. A row leaves by dropping
its batch row. When the oldest live row joined long ago, the unused leading columns are cut off
(`compact`), so attention never runs over more columns than the longest live row needs.

`FastBatch` runs on the lean fp16 decoder with a preallocated cache that grows by doubling;
`TorchBatch` on the transformers model (any device, any dtype) through a `DynamicCache` whose
per-layer tensors are edited in place, so rows with different LoRA adapters share a step through
PEFT's mixed-batch inference (`adapter_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pipelines.engine.models import ModelHandle


def prefill_inputs(
    handle: ModelHandle, padded: torch.Tensor, mask: torch.Tensor, adapter: str | None
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Forward inputs for the first pass, with a prompt-tuning adapter's virtual tokens in front.

    Returns the inputs, the attention mask (virtual tokens included) and the position ids.
    """
    prefix = handle.virtual_prefix(adapter)
    device = handle.device
    inputs: dict[str, Any] = {"use_cache": True, "logits_to_keep": 1}
    if prefix is not None:
        embeds = handle.embed(padded.to(device))
        inputs["inputs_embeds"] = torch.cat([prefix.unsqueeze(0).expand(padded.shape[0], -1, -1), embeds], dim=1)
        mask = torch.cat([torch.ones((padded.shape[0], prefix.shape[0]), dtype=mask.dtype), mask], dim=-1)
    else:
        inputs["input_ids"] = padded.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    inputs["position_ids"] = positions.to(device)
    if bool((mask == 0).any()):
        inputs["attention_mask"] = mask.to(device)
    return inputs, mask, positions


def _grow(have: int, need: int, least: int) -> int:
    """A new capacity for `need`: unchanged when it fits, else doubled (amortised copies)."""
    return have if need <= have else max(need, 2 * have, least)


@dataclass
class Prefill:
    """One prompt's keys and values, computed alone chunk by chunk (or with other short prompts in one
    left-padded pass), then copied into the batch."""

    ids: list[int]
    adapter: str | None
    done_tokens: int = 0
    length: int = 0  # cache columns the prompt fills (virtual tokens of prompt tuning included)
    logits: torch.Tensor | None = None  # next-token logits after the whole prompt
    # per layer (keys, values) [1, kv_heads, length, head_dim]: what `join` copies into the batch
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    partial: Any = None  # the engine's cache between the chunks of a long prompt

    @property
    def done(self) -> bool:
        return self.logits is not None


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts right-aligned in one [n, width] tensor, and the mask of real (non-padding) tokens."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for b, prompt in enumerate(prompts):
        ids[b, width - len(prompt) :] = torch.tensor(list(prompt))
        mask[b, width - len(prompt) :] = 1
    return ids, mask


def _finish_group(
    jobs: Sequence[Prefill], layers: Sequence[tuple[torch.Tensor, torch.Tensor]], logits: torch.Tensor
) -> None:
    """Give each job of a left-padded group prefill its own columns of the shared cache and its logits."""
    width = layers[0][0].shape[2]
    for b, job in enumerate(jobs):
        start = width - len(job.ids)
        job.kv = [(k[b : b + 1, :, start:], v[b : b + 1, :, start:]) for k, v in layers]
        job.length = job.done_tokens = len(job.ids)
        job.logits = logits[b].float().cpu()


def pad_id(handle: ModelHandle) -> int:
    pad = handle.tokenizer.pad_token_id
    return pad if pad is not None else 0


@dataclass
class _Timeline:
    """Row count, timeline length and the per-row key mask, the same for every engine."""

    rows: int = 0
    end: int = 0
    key_mask: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 0), dtype=torch.bool))

    def _mask_capacity(self, rows: int, columns: int) -> None:
        have_rows, have_cols = self.key_mask.shape
        if rows <= have_rows and columns <= have_cols:
            return
        grown = torch.zeros((_grow(have_rows, rows, 4), _grow(have_cols, columns, 128)), dtype=torch.bool)
        grown[:have_rows, :have_cols] = self.key_mask
        self.key_mask = grown

    def _place(self, length: int, copies: int) -> int:
        """Make room for `copies` rows whose prompt fills `length` columns; returns the first new row."""
        shift = max(0, length - self.end)
        self._mask_capacity(self.rows + copies, self.end + shift + 1)
        if shift:
            live = self.key_mask[: self.rows, : self.end].clone()
            self.key_mask[: self.rows, : self.end + shift] = False
            self.key_mask[: self.rows, shift : shift + self.end] = live
            self.end += shift
        first = self.rows
        self.key_mask[first : first + copies, : self.end] = False
        self.key_mask[first : first + copies, self.end - length : self.end] = True
        self.rows += copies
        return first

    def _keep(self, keep: Sequence[int]) -> None:
        index = torch.tensor(list(keep), dtype=torch.long)
        self.key_mask[: len(keep)] = self.key_mask[index]
        self.rows = len(keep)
        if not self.rows:
            self.end = 0

    def _drop_columns(self, columns: int) -> None:
        """The key mask's side of `compact`: the first `columns` columns go, the timeline shortens."""
        live = self.key_mask[: self.rows, columns : self.end].clone()
        self.key_mask[: self.rows, : self.end - columns] = live
        self.end -= columns

    def unused_columns(self) -> int:
        """Leading columns no live row attends to (they can be cut off)."""
        if not self.rows or not self.end:
            return 0
        used = self.key_mask[: self.rows, : self.end].any(0)
        return int(used.float().argmax()) if bool(used.any()) else self.end

    def _next_column(self) -> torch.Tensor:
        self._mask_capacity(self.rows, self.end + 1)
        self.key_mask[: self.rows, self.end] = True
        return self.key_mask[: self.rows, : self.end + 1]


class FastBatch(_Timeline):
    """The running batch on the lean fp16 decoder (base model only), in a preallocated cache."""

    def __init__(self, handle: ModelHandle, decoder: Any) -> None:
        super().__init__()
        self.handle = handle
        self.decoder = decoder
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _capacity(self, rows: int, columns: int) -> None:
        have_rows = self.cache[0][0].shape[0] if self.cache else 0
        have_cols = self.cache[0][0].shape[2] if self.cache else 0
        if rows <= have_rows and columns <= have_cols:
            return
        grown = self.decoder.new_cache(_grow(have_rows, rows, 4), _grow(have_cols, columns, 128))
        for (k, v), (gk, gv) in zip(self.cache, grown, strict=False):
            gk[: self.rows, :, : self.end] = k[: self.rows, :, : self.end]
            gv[: self.rows, :, : self.end] = v[: self.rows, :, : self.end]
        self.cache = grown

    def prefill(self, job: Prefill, budget: int) -> int:
        """Feed up to `budget` more prompt tokens of one job; returns how many were fed."""
        total = len(job.ids)
        prefixes = self.decoder.prefixes
        if job.partial is None:
            job.partial = self.decoder.new_cache(1, total)
            if job.done_tokens == 0:  # a prompt that starts like one read before: copy, do not feed, those
                reused, kv = prefixes.longest(job.ids)
                if kv is not None:
                    for (k, v), (pk, pv) in zip(job.partial, kv, strict=True):
                        k[:, :, :reused] = pk[:, :, :reused]
                        v[:, :, :reused] = pv[:, :, :reused]
                    job.done_tokens = reused
        take = min(budget, total - job.done_tokens) if budget > 0 else total - job.done_tokens
        start = job.done_tokens
        chunk = torch.tensor([job.ids[start : start + take]], dtype=torch.long)
        positions = torch.arange(start, start + take)[None]
        with self.handle.locked():
            logits = self.decoder.forward(chunk, positions, start, job.partial)
        job.done_tokens += take
        if job.done_tokens == total:
            job.length = total
            job.logits = logits[0].float()
            job.kv, job.partial = job.partial, None
            prefixes.add(job.ids, job.kv)  # never written again: `join` only reads it
        return take

    def reusable(self, ids: Sequence[int]) -> int:
        """Leading prompt tokens whose keys and values another request already computed (prefix_cache.py)."""
        return self.decoder.prefixes.reusable(ids)

    def prefill_group(self, jobs: Sequence[Prefill]) -> None:
        """Several short prompts in one left-padded pass (a GEMM of n rows costs far less than n GEMMs)."""
        ids, mask = left_padded([j.ids for j in jobs], pad_id(self.handle))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        layers = self.decoder.new_cache(len(jobs), ids.shape[1])
        with self.handle.locked():
            logits = self.decoder.forward(ids, positions, 0, layers, mask.bool())
        _finish_group(jobs, layers, logits)

    def join(self, job: Prefill, copies: int) -> None:
        length = job.length
        shift = max(0, length - self.end)
        self._capacity(self.rows + copies, self.end + shift + 1)
        if shift:
            for k, v in self.cache:
                for t in (k, v):
                    t[: self.rows, :, shift : shift + self.end] = t[: self.rows, :, : self.end].clone()
        first = self._place(length, copies)
        for (k, v), (pk, pv) in zip(self.cache, job.kv, strict=False):
            k[first : first + copies, :, self.end - length : self.end] = pk[:, :, :length]
            v[first : first + copies, :, self.end - length : self.end] = pv[:, :, :length]

    def leave(self, keep: Sequence[int]) -> None:
        if len(keep) == self.rows:
            return
        if keep:
            index = torch.tensor(list(keep), dtype=torch.long)
            for k, v in self.cache:
                k[: len(keep), :, : self.end] = k[index, :, : self.end]
                v[: len(keep), :, : self.end] = v[index, :, : self.end]
        self._keep(keep)
        if not self.rows:
            self.cache = []  # an idle server holds no cache

    def compact(self, columns: int) -> None:
        """Cut the first `columns` columns off the timeline (no live row uses them)."""
        if columns <= 0:
            return
        for k, v in self.cache:
            for t in (k, v):
                t[: self.rows, :, : self.end - columns] = t[: self.rows, :, columns : self.end].clone()
        self._drop_columns(columns)

    def step(self, tokens: Sequence[int], positions: Sequence[int], adapters: Sequence[str | None]) -> torch.Tensor:
        """Next-token logits [rows, V] after feeding one token per row at column `end`."""
        self._capacity(self.rows, self.end + 1)
        key_mask = self._next_column()
        ids = torch.tensor(list(tokens), dtype=torch.long)[:, None]
        pos = torch.tensor(list(positions), dtype=torch.long)[:, None]
        cache = [(k[: self.rows], v[: self.rows]) for k, v in self.cache]
        with self.handle.locked():
            logits = self.decoder.forward(ids, pos, self.end, cache, key_mask)
        self.end += 1
        return logits.float()


def _cache_layers(cache: Any) -> list[Any]:
    return list(cache.layers)


class TorchBatch(_Timeline):
    """The running batch on the transformers model: adapters, any device and dtype, exact fp32 on CPU."""

    def __init__(self, handle: ModelHandle) -> None:
        super().__init__()
        self.handle = handle
        self.cache: Any = None

    def prefill(self, job: Prefill, budget: int) -> int:
        """Feed up to `budget` more prompt tokens of one job (a prompt-tuning prompt goes in whole)."""
        device = self.handle.device
        total = len(job.ids)
        if self.handle.virtual_prefix(job.adapter) is not None or budget <= 0:
            take = total - job.done_tokens  # virtual tokens go in with the first pass: one pass
        else:
            take = min(budget, total - job.done_tokens)
        start = job.done_tokens
        if start == 0 and take == total:
            ids = torch.tensor([job.ids], dtype=torch.long)
            inputs, mask, _ = prefill_inputs(self.handle, ids, torch.ones_like(ids), job.adapter)
            length = mask.shape[1]
        else:
            inputs = {
                "input_ids": torch.tensor([job.ids[start : start + take]], dtype=torch.long).to(device),
                "position_ids": torch.arange(start, start + take)[None].to(device),
                "use_cache": True,
                "logits_to_keep": 1,
            }
            length = start + take
        out = self.handle.forward(**inputs, past_key_values=job.partial, adapter=job.adapter)
        job.partial = out.past_key_values
        job.done_tokens += take
        if job.done_tokens == total:
            job.length = length
            job.logits = out.logits[0, -1].float().cpu()
            job.kv = [(layer.keys, layer.values) for layer in _cache_layers(job.partial)]
            job.partial = None
        return take

    def reusable(self, ids: Sequence[int]) -> int:
        """None here: adapters change the keys and values (the cache is the lean decoder's, base model only)."""
        return 0

    def prefill_group(self, jobs: Sequence[Prefill]) -> None:
        """Several short prompts in one left-padded pass; rows with different LoRA adapters share it."""
        ids, mask = left_padded([j.ids for j in jobs], pad_id(self.handle))
        inputs, _, _ = prefill_inputs(self.handle, ids, mask, None)
        out = self.handle.forward(**inputs, adapter=[j.adapter for j in jobs])
        layers = [(layer.keys, layer.values) for layer in _cache_layers(out.past_key_values)]
        _finish_group(jobs, layers, out.logits[:, -1])

    def join(self, job: Prefill, copies: int) -> None:
        length = job.length
        shift = max(0, length - self.end)
        self._place(length, copies)
        if self.cache is None:  # the first rows: a cache of their own (other rows may share the prompt's)
            from transformers import DynamicCache

            self.cache = DynamicCache(
                ddp_cache_data=[
                    (
                        k[:, :, :length].expand(copies, -1, -1, -1).contiguous(),
                        v[:, :, :length].expand(copies, -1, -1, -1).contiguous(),
                    )
                    for k, v in job.kv
                ]
            )
            return
        for layer, (pk, pv) in zip(_cache_layers(self.cache), job.kv, strict=False):
            for name, new in (("keys", pk), ("values", pv)):
                old = getattr(layer, name)
                if shift:
                    pad = old.new_zeros((old.shape[0], old.shape[1], shift, old.shape[3]))
                    old = torch.cat([pad, old], dim=2)
                piece = new[:, :, :length].expand(copies, -1, -1, -1)
                front = old.new_zeros((copies, old.shape[1], self.end - length, old.shape[3]))
                setattr(layer, name, torch.cat([old, torch.cat([front, piece], dim=2)], dim=0))

    def leave(self, keep: Sequence[int]) -> None:
        if len(keep) == self.rows:
            return
        self._keep(keep)
        if not self.rows:
            self.cache = None
            return
        index = torch.tensor(list(keep), dtype=torch.long, device=self.handle.device)
        for layer in _cache_layers(self.cache):
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)

    def compact(self, columns: int) -> None:
        if columns <= 0:
            return
        for layer in _cache_layers(self.cache):
            layer.keys = layer.keys[:, :, columns:].contiguous()
            layer.values = layer.values[:, :, columns:].contiguous()
        self._drop_columns(columns)

    def step(self, tokens: Sequence[int], positions: Sequence[int], adapters: Sequence[str | None]) -> torch.Tensor:
        device = self.handle.device
        key_mask = self._next_column()
        out = self.handle.forward(
            input_ids=torch.tensor(list(tokens), dtype=torch.long)[:, None].to(device),
            position_ids=torch.tensor(list(positions), dtype=torch.long)[:, None].to(device),
            attention_mask=key_mask.long().to(device),
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
            adapter=list(adapters),  # one adapter for every row, or PEFT's mixed batch: ModelHandle.forward decides
        )
        self.cache = out.past_key_values
        self.end += 1
        return out.logits[:, -1, :].float().cpu()


def torch_batchable(handle: ModelHandle) -> bool:
    """Whether the transformers model's cache is the plain per-layer kind the timeline can edit.

    Sliding-window and hybrid (recurrent) caches keep state the column timeline cannot shift; such
    models decode request by request, as before the scheduler.
    """
    config = handle.base_model.config
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    return not getattr(config, "is_encoder_decoder", False)
