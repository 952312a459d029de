"""Steering: add a direction to the residual stream while the model writes, and watch the text change.

The vector is the difference of the mean residual stream (after one block) between two sets of prompts,
e.g. positive and negative reviews (Turner et al. 2023, "activation addition"; Rimsky et al. 2024,
"contrastive activation addition"):

    v = mean over positive prompts of h_l  -  mean over negative prompts of h_l

Generation then adds strength x v to that block's output at every position, prompt and new tokens. The
steered and the unsteered texts are two rows of one batch with their own, equally seeded, random
generators: with the vector at strength 0 they are the same text, so any difference is the vector's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines import gpu, knobs
from pipelines.config import DATASETS
from pipelines.engine.model_structure import decoder_blocks
from pipelines.engine.sampling import SamplingParams, process_logits, sample_with_probability
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.store.rows import RowsError
from pipelines.store.rows import loads as bounded_json

from . import MAX_TOKENS, _check_adapter, _checked_text, _described, _prompt_ids
from .hooks import attached, first, recorded, replaced

SENTIMENT = DATASETS / "sentiment.jsonl"
MAX_PROMPTS = 500  # per set
MAX_PROMPT_CHARS = 2_000
MAX_FILE_BYTES = 2_000_000


@dataclass(frozen=True)
class SteerSpec:
    """Where the vector is added, how strongly, and how the two texts are sampled."""

    layer: int = knob(
        12,
        help="the block whose output the vector is read from and added to (0 = the first)",
        label="Layer",
        low=0,
        high=1023,
        step=1,
    )
    strength: float = knob(
        4.0,
        help="multiple of the vector added at every position; negative steers the other way, 0 changes nothing",
        label="Strength",
        low=-40,
        high=40,
        step=0.5,
    )
    max_new_tokens: int = knob(40, help="tokens each text gets", label="New tokens", low=1, high=200, step=1)
    temperature: float = knob(
        0.7, help="sampling temperature of both texts (0 = greedy)", label="Temperature", low=0, high=2, step=0.05
    )
    seed: int = knob(
        0,
        help="one seed for both texts: at strength 0 they are identical",
        label="Seed",
        low=0,
        high=2**31 - 1,
        step=1,
        slider=False,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


@dataclass(frozen=True)
class Vector:
    layer: int
    direction: torch.Tensor  # [hidden], the raw difference of means
    positive: int  # prompts in each set
    negative: int
    residual_norm: float  # the mean norm of the stream at that layer over both sets: the vector's scale

    @property
    def norm(self) -> float:
        return float(self.direction.norm())


def sentiment_sets() -> tuple[list[str], list[str]]:
    """The bundled sentiment reviews, split by label: the default positive and negative sets."""
    rows = [json.loads(line) for line in SENTIMENT.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows if r["label"] == "positive"], [r["text"] for r in rows if r["label"] == "negative"]


def prompts_from_text(text: str, param: str) -> list[str]:
    """One prompt per line, or JSON Lines with a "text" field; blank lines skipped, each checked for size."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidParameter(param, "is empty: give one prompt per line")
    prompts: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                row = bounded_json(line)  # nesting bounded: a deep line is a message, never a RecursionError
            except RowsError as error:
                raise InvalidParameter(param, f"line {number} starts like JSON but is not: {error}") from error
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InvalidParameter(param, f'line {number}: a JSON line needs a "text" string')
            line = row["text"].strip()
        if len(line) > MAX_PROMPT_CHARS:
            raise InvalidParameter(param, f"line {number} has {len(line):,} characters, at most {MAX_PROMPT_CHARS:,}")
        if line:
            prompts.append(line)
        if len(prompts) > MAX_PROMPTS:
            raise InvalidParameter(param, f"has more than {MAX_PROMPTS} prompts")
    if not prompts:
        raise InvalidParameter(param, "has no prompts: give one per line")
    return prompts


def prompts_from_file(path: str | Path, param: str) -> list[str]:
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidParameter(param, f"{file.name} is {size:,} bytes, at most {MAX_FILE_BYTES:,}")
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidParameter(param, f"{file.name} is not UTF-8 text") from error
    except OSError as error:
        raise InvalidParameter(param, f"cannot read {file}: {error.strerror or error}") from error
    return prompts_from_text(text, param)


def _block(handle: Any, layer: int) -> torch.nn.Module:
    blocks = decoder_blocks(handle.base_model)
    if not 0 <= layer < len(blocks):
        raise InvalidParameter("layer", f"must be between 0 and {len(blocks) - 1}, got {layer}")
    return blocks[layer]


PROMPTS_PER_PASS = 16  # prompts sent through the model together: 500 long prompts at once would take gigabytes


def _streams_of(
    handle: Any, rows: list[list[int]], layer: int, adapter: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt's mean stream after block `layer` (its first token left out: the attention sink's vector is
    huge and the same for every prompt) [prompts, hidden], and every token's stream norm [tokens]."""
    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with recorded([_block(handle, layer)]) as kept, torch.inference_mode():
        handle.forward(
            adapter, input_ids=ids.to(handle.device), attention_mask=mask.to(handle.device), logits_to_keep=1
        )
    stream = kept[0].float().cpu()  # [prompts, width, hidden]
    use = mask.clone().float()
    use[:, 0] = torch.where(mask.sum(dim=1) > 1, 0.0, 1.0)  # a one-token prompt keeps its only token
    per_prompt = (stream * use[..., None]).sum(dim=1) / use.sum(dim=1, keepdim=True)
    return per_prompt, stream.norm(dim=-1)[use.bool()]


def _mean_stream(handle: Any, prompts: Sequence[str], layer: int, adapter: str | None) -> tuple[torch.Tensor, float]:
    """The mean over prompts of each prompt's mean stream after block `layer`, and the streams' mean norm."""
    tokenizer = handle.tokenizer
    rows = [
        list(tokenizer(p, add_special_tokens=False)["input_ids"])[:MAX_TOKENS] or [tokenizer.eos_token_id]
        for p in prompts
    ]
    means, norms = [], []
    for start in range(0, len(rows), PROMPTS_PER_PASS):
        mean, norm = _streams_of(handle, rows[start : start + PROMPTS_PER_PASS], layer, adapter)
        means.append(mean)
        norms.append(norm)
    return torch.cat(means).mean(dim=0), float(torch.cat(norms).mean())


@gpu.task()
def vector(
    handle: Any, positive: Sequence[str], negative: Sequence[str], *, layer: int, adapter: str | None = None
) -> Vector:
    """The difference of the two sets' mean streams after block `layer`."""
    _check_adapter(handle, adapter)
    for param, prompts in (("positive", positive), ("negative", negative)):
        if not prompts:
            raise InvalidParameter(param, "has no prompts")
    block = int(layer)
    _block(handle, block)
    with handle.locked():
        plus, plus_norm = _mean_stream(handle, positive, block, adapter)
        minus, minus_norm = _mean_stream(handle, negative, block, adapter)
    return Vector(block, plus - minus, len(positive), len(negative), (plus_norm + minus_norm) / 2)


def _adder(direction: torch.Tensor, strength: float, rows: int) -> Any:
    """Adds strength x direction to the first row only: the second row is the unsteered text."""

    def hook(_module: Any, _inputs: Any, output: Any) -> Any:
        tensor = first(output).clone()
        tensor[:rows] += (strength * direction).to(tensor.dtype).to(tensor.device)
        return replaced(output, tensor)

    return hook


def _generate_pair(handle: Any, ids: list[int], found: Vector, spec: SteerSpec, adapter: str | None) -> list[list[int]]:
    """Row 0 steered, row 1 not; each its own generator from the same seed, stopping at an end token."""
    params = SamplingParams(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature)
    generators = [torch.Generator().manual_seed(spec.seed) for _ in range(2)]
    written: list[list[int]] = [[], []]
    done = [False, False]
    current = torch.tensor([ids, ids], device=handle.device)
    past = None
    hook = _adder(found.direction, spec.strength, 1)
    with handle.locked(), attached([(_block(handle, found.layer), hook)]), torch.inference_mode():
        for _ in range(spec.max_new_tokens):
            output = handle.forward(adapter, input_ids=current, past_key_values=past, use_cache=True, logits_to_keep=1)
            past = output.past_key_values
            logits = output.logits[:, -1].float().cpu()
            chosen = []
            for row in range(2):
                previous = torch.tensor(ids + written[row], dtype=torch.long)
                token, _ = sample_with_probability(
                    process_logits(logits[row], params, previous, track_cuts=False), params, generators[row]
                )
                if not done[row]:
                    written[row].append(token)
                    done[row] = token in handle.eos_token_ids
                chosen.append(token)
            if all(done):
                break
            current = torch.tensor([[t] for t in chosen], device=handle.device)
    return [[t for t in row if t not in handle.eos_token_ids] for row in written]


def _projections(handle: Any, ids: list[int], found: Vector, adapter: str | None) -> list[float]:
    """Each token's stream after the block (unsteered), projected on the vector's unit direction."""
    unit = found.direction / max(found.norm, 1e-12)
    with handle.locked(), torch.inference_mode(), recorded([_block(handle, found.layer)]) as kept:
        handle.forward(adapter, input_ids=torch.tensor([ids], device=handle.device), logits_to_keep=1)
    return [round(float(v), 4) for v in kept[0][0].float().cpu() @ unit]


@gpu.task()
def steer(handle: Any, prompt: str, found: Vector, spec: SteerSpec, *, adapter: str | None = None) -> dict[str, Any]:
    """The prompt's continuation with and without the vector (same seed), and each token's projection.

    Returns {"steered", "unsteered" (texts of the new tokens), "layer", "strength", "vector_norm",
    "residual_norm", "projection": {"steered": [{"token", "value"}], "unsteered": [...]}, "prompt_tokens"}.
    """
    _checked_text(prompt, "prompt")
    if spec.layer != found.layer:
        raise InvalidParameter("layer", f"the vector was built at layer {found.layer}, not {spec.layer}")
    ids = _prompt_ids(handle, prompt)
    steered, unsteered = _generate_pair(handle, ids, found, spec, adapter)
    tokenizer = handle.tokenizer

    def projected(new: list[int]) -> list[dict[str, Any]]:
        whole = ids + new
        values = _projections(handle, whole, found, adapter)
        return [{**token, "value": value} for token, value in zip(_described(tokenizer, whole), values, strict=True)]

    return {
        "steered": tokenizer.decode(steered, skip_special_tokens=True),
        "unsteered": tokenizer.decode(unsteered, skip_special_tokens=True),
        "layer": found.layer,
        "strength": spec.strength,
        "seed": spec.seed,
        "vector_norm": round(found.norm, 4),
        "residual_norm": round(found.residual_norm, 4),
        "sets": {"positive": found.positive, "negative": found.negative},
        "prompt_tokens": len(ids),
        "new_tokens": {"steered": len(steered), "unsteered": len(unsteered)},
        "projection": {"steered": projected(steered), "unsteered": projected(unsteered)},
    }
