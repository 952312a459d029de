"""Which attention heads do a recognisable job: a score per head for three well-known patterns.

Neuronpedia and TransformerLens rank heads by the same three numbers, each the mean attention weight a
head puts where the pattern says it should:

- **induction**: on a random token sequence repeated twice, a token of the second copy attending to
  the token that *followed* its earlier occurrence (position i - T + 1 for a copy of length T). The
  tokens are random, so nothing but the repetition can tell a head where to look: a high score is
  the copy-the-continuation circuit in-context learning is built on.
- **previous token**: on ordinary text, token i attending to token i - 1.
- **sink** (first token): on ordinary text, token i attending to position 0, where heads with
  nothing to do park their weight (Xiao et al., 2023, "attention sinks").

All three come from one forward pass over a small fixed probe batch (both kinds of rows, one length),
so the scores are deterministic for given weights and cached on disk by the weights' identity.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines import gpu
from pipelines.config import get_settings
from pipelines.store.files import write_atomic
from pipelines.train.evaluation import GENERAL_TEXT

from . import InsideError, _check_adapter, _eager_attention

PROBE_VERSION = 1  # change when the probe or the scores' definitions change: old caches are then ignored
COPY_LENGTH = 24  # T: the repeated random sequence's length (rows are 2T + 1 tokens with the first token)
RANDOM_ROWS = 4
TEXT_ROWS = 4
SEED = 0
SCORES = ("induction", "previous_token", "sink")
PROBE_TEXT = GENERAL_TEXT


@dataclass(frozen=True)
class Probe:
    """The probe batch: `RANDOM_ROWS` repeated random rows, then `TEXT_ROWS` rows of ordinary text."""

    ids: torch.Tensor  # [rows, 2T + 1]
    random_rows: int
    copy_length: int


def probe(tokenizer: Any, *, copy_length: int = COPY_LENGTH) -> Probe:
    """A fixed batch: the same for every call with the same tokenizer (seeded), so scores are comparable."""
    length = 2 * copy_length + 1
    first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    generator = torch.Generator().manual_seed(SEED)
    vocab = len(tokenizer)
    rows = []
    for _ in range(RANDOM_ROWS):
        copy: list[int] = []
        while len(copy) < copy_length:
            candidate = int(torch.randint(0, vocab, (1,), generator=generator))
            if candidate not in special and candidate not in copy:
                copy.append(candidate)
        rows.append([first, *copy, *copy])
    text = PROBE_TEXT.read_text(encoding="utf-8")
    stream = tokenizer(text, add_special_tokens=False)["input_ids"]
    needed = TEXT_ROWS * (length - 1)
    if len(stream) < needed:
        raise InsideError(f"the head probe's text ({PROBE_TEXT.name}) has {len(stream)} tokens, {needed} needed")
    for row in range(TEXT_ROWS):
        rows.append([first, *stream[row * (length - 1) : (row + 1) * (length - 1)]])
    return Probe(torch.tensor(rows), RANDOM_ROWS, copy_length)


def scores_from_attention(attentions: Any, found: Probe) -> torch.Tensor:
    """[layers, heads, 3]: induction, previous-token and sink scores from the probe's attention weights
    (one [rows, heads, query, key] tensor per layer)."""
    t = found.copy_length
    r = found.random_rows
    second = torch.arange(t + 1, 2 * t + 1)  # queries in the second copy
    positions = torch.arange(1, 2 * t + 1)  # every query but the first (which can only look at itself)
    out = []
    for weights in attentions:
        w = weights.float()
        induction = w[:r, :, second, second - t + 1].mean(dim=(0, 2))
        previous = w[r:, :, positions, positions - 1].mean(dim=(0, 2))
        sink = w[r:, :, positions, 0].mean(dim=(0, 2))
        out.append(torch.stack([induction, previous, sink], dim=-1))
    return torch.stack(out)


def _cache_path(handle: Any, adapter: str | None) -> Path:
    """One file per weights: the model's name, its parameter count and the adapter's version."""
    identity = {
        "model": getattr(handle, "name", ""),
        "source": getattr(handle, "source", ""),
        "params": int(getattr(handle, "parameter_count", 0) or 0),
        "adapter": handle.adapter_fingerprint(adapter) if adapter else None,
        "probe": PROBE_VERSION,
        "copy_length": COPY_LENGTH,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return get_settings().data_dir / "inside" / "heads" / f"{key}.json"


def _read_cache(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or torn: scanned again
    return report if isinstance(report, dict) and isinstance(report.get("heads"), list) else None


@gpu.task()
def scan(handle: Any, *, adapter: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Every head's three scores, from the cache when these weights were scanned before.

    Returns {"heads": [{"layer", "head", "induction", "previous_token", "sink"}], "layers", "heads_per_layer",
    "seconds" (of the scan that made them), "cached", "probe"}.
    """
    _check_adapter(handle, adapter)
    path = _cache_path(handle, adapter)
    if not refresh and (cached := _read_cache(path)) is not None:
        return {**cached, "cached": True}
    found = probe(handle.tokenizer)
    started = time.perf_counter()
    with handle.locked(), _eager_attention(handle.base_model), torch.inference_mode():
        output = handle.forward(adapter, input_ids=found.ids.to(handle.device), output_attentions=True)
    table = scores_from_attention(output.attentions, found)
    seconds = time.perf_counter() - started
    layers, heads, _ = table.shape
    report = {
        "heads": [
            {
                "layer": layer,
                "head": head,
                **{name: round(float(table[layer, head, i]), 5) for i, name in enumerate(SCORES)},
            }
            for layer in range(layers)
            for head in range(heads)
        ],
        "layers": layers,
        "heads_per_layer": heads,
        "seconds": round(seconds, 3),
        "adapter": adapter,
        "probe": {
            "random_rows": found.random_rows,
            "text_rows": int(found.ids.shape[0]) - found.random_rows,
            "copy_length": found.copy_length,
            "tokens_per_row": int(found.ids.shape[1]),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report))
    return {**report, "cached": False}


def top(report: dict[str, Any], score: str, n: int = 5) -> list[dict[str, Any]]:
    """The n heads with the highest `score`."""
    if score not in SCORES:
        raise InsideError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    return sorted(report["heads"], key=lambda h: -h[score])[:n]
