"""Activation patching: which layer and position carries a fact, shown by cause rather than by looking.

Two prompts of the same length differ in one fact ("The Eiffel Tower is in" / "The Colosseum is in").
The clean run's activation at one (layer, position) is written into the corrupted run, and the metric
is the logit difference **logit(target) - logit(foil)** at the last position: where patching brings the
clean answer back, that activation carries what the clean prompt knows (Meng et al. 2022, "ROME"; the
method of TransformerLens and NDIF Workbench).

Three places per layer, each the output the block adds or leaves: the residual stream after the block
("residual"), the attention's output ("attention") and the MLP's output ("mlp"). One pass per (place,
layer) covers every position: row p of the batch patches position p.

Exactness, checked by the tests: patching the residual stream at every position of any layer gives the
clean run's logits, because everything after that point sees exactly the clean inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from pipelines import gpu
from pipelines.engine.model_structure import decoder_blocks
from pipelines.errors import InvalidParameter

from . import InsideError, _check_adapter, _described, _piece, _prompt_ids
from .hooks import attached, first, recorded, replaced

PLACES = ("residual", "attention", "mlp")
TOP = 8  # tokens shown in a patched cell's next-token distribution
MAX_PATCH_TOKENS = 64  # a grid is a pass per layer and position (16 rows a pass): time grows with the square
ROWS_PER_PASS = 16  # patched rows sent through the model together (memory stays that of a 16-row batch)


def _module(block: torch.nn.Module, place: str) -> torch.nn.Module:
    if place == "residual":
        return block
    name = {"attention": "self_attn", "mlp": "mlp"}[place]
    module = getattr(block, name, None)
    if module is None:
        raise InsideError(f"this model's blocks have no {name!r}: patch the residual stream instead")
    return module


def _run(handle: Any, ids: torch.Tensor, adapter: str | None) -> torch.Tensor:
    """Last-position logits of each row, [rows, vocab], in float."""
    with torch.inference_mode():
        # logits_to_keep=1: the output head for the last position only (a fifth of the pass otherwise)
        return handle.forward(adapter, input_ids=ids.to(handle.device), logits_to_keep=1).logits[:, -1].float()


def _record(handle: Any, ids: torch.Tensor, adapter: str | None) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """The clean run: its last-position logits and every place's output at every layer ([positions, hidden])."""
    blocks = decoder_blocks(handle.base_model)
    with ExitStack() as stack:
        kept = {place: stack.enter_context(recorded([_module(block, place) for block in blocks])) for place in PLACES}
        logits = _run(handle, ids[None], adapter)
    # the hooks fire block by block: per place, the outputs are in layer order
    return logits[0], {place: [output[0] for output in outputs] for place, outputs in kept.items()}


def _patcher(source: torch.Tensor, positions: torch.Tensor) -> Any:
    """Row r gets the clean value at positions[r] (positions: [rows] or a [rows, k] set)."""

    def hook(_module: Any, _inputs: Any, output: Any) -> Any:
        tensor = first(output).clone()
        rows = torch.arange(tensor.shape[0], device=tensor.device)
        if positions.dim() == 1:
            tensor[rows, positions] = source[positions].to(tensor.dtype)
        else:
            for row in range(tensor.shape[0]):
                tensor[row, positions[row]] = source[positions[row]].to(tensor.dtype)
        return replaced(output, tensor)

    return hook


@dataclass(frozen=True)
class Prepared:
    clean: torch.Tensor  # [positions]
    corrupt: torch.Tensor
    target: int
    foil: int
    clean_logits: torch.Tensor  # [vocab]
    corrupt_logits: torch.Tensor
    recorded: dict[str, list[torch.Tensor]]


def token_id(tokenizer: Any, token: str, param: str) -> int:
    """The id of a one-token answer. " Paris" (with its space, as it follows a word) is tried before "Paris"."""
    if not isinstance(token, str) or not token.strip():
        raise InvalidParameter(param, "is empty: give the answer token, e.g. ' Paris'")
    candidates = [token] if token.startswith(" ") else [" " + token, token]
    for candidate in candidates:
        ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
    pieces = [_piece(tokenizer, i) for i in tokenizer(candidates[0], add_special_tokens=False)["input_ids"]]
    raise InvalidParameter(param, f"{token!r} is {len(pieces)} tokens ({' + '.join(pieces)}): give a one-token answer")


def _count(tokens: int) -> str:
    return f"{tokens} token" + ("" if tokens == 1 else "s")


def prepare(
    handle: Any, clean: str, corrupt: str, target: str, foil: str | None = None, adapter: str | None = None
) -> Prepared:
    """Both runs, the clean one recorded; the foil defaults to the corrupted run's own top answer."""
    _check_adapter(handle, adapter)
    clean_ids = torch.tensor(_prompt_ids(handle, clean, "clean"))
    corrupt_ids = torch.tensor(_prompt_ids(handle, corrupt, "corrupt"))
    for param, ids in (("clean", clean_ids), ("corrupt", corrupt_ids)):
        if ids.numel() > MAX_PATCH_TOKENS:
            raise InvalidParameter(
                param,
                f"is {ids.numel()} tokens; patching takes at most {MAX_PATCH_TOKENS} (one pass per layer and position: "
                "a fact fits in a sentence)",
            )
    if clean_ids.numel() != corrupt_ids.numel():
        raise InvalidParameter(
            "corrupt",
            f"has {_count(corrupt_ids.numel())} and the clean prompt {_count(clean_ids.numel())}: patching needs prompts of "
            "the same length, differing in the fact (e.g. swap one name for another of as many tokens)",
        )
    target_id = token_id(handle.tokenizer, target, "target")
    with handle.locked():
        clean_logits, recorded = _record(handle, clean_ids, adapter)
        corrupt_logits = _run(handle, corrupt_ids[None], adapter)[0]
    if foil:
        foil_id = token_id(handle.tokenizer, foil, "foil")
    else:
        ranked = torch.topk(corrupt_logits, 2).indices.tolist()
        foil_id = int(ranked[1] if ranked[0] == target_id else ranked[0])
    if foil_id == target_id:
        raise InvalidParameter("foil", "is the target itself: the logit difference would be 0 everywhere")
    return Prepared(clean_ids, corrupt_ids, target_id, foil_id, clean_logits, corrupt_logits, recorded)


def _diff(logits: torch.Tensor, found: Prepared) -> torch.Tensor:
    return logits[..., found.target] - logits[..., found.foil]


def patched_logits(
    handle: Any, found: Prepared, *, place: str, layer: int, positions: Sequence[Sequence[int]], adapter: str | None
) -> torch.Tensor:
    """The corrupted run's last-position logits with the clean `place` output patched in at `layer`, one row
    per set of positions: [rows, vocab]."""
    if place not in PLACES:
        raise InvalidParameter("place", f"must be one of {', '.join(PLACES)}, got {place!r}")
    blocks = decoder_blocks(handle.base_model)
    if not 0 <= layer < len(blocks):
        raise InvalidParameter("layer", f"must be between 0 and {len(blocks) - 1}, got {layer}")
    sizes = {len(p) for p in positions}
    index = torch.tensor([list(p) for p in positions]) if len(sizes) == 1 else None
    if index is None or index.numel() == 0:
        raise InvalidParameter("positions", "every row patches the same number of positions (at least one)")
    if int(index.min()) < 0 or int(index.max()) >= found.corrupt.numel():
        raise InvalidParameter("positions", f"must be between 0 and {found.corrupt.numel() - 1}")
    index = index[:, 0] if index.shape[1] == 1 else index
    source = found.recorded[place][layer]
    out = []
    with handle.locked():
        for start in range(0, len(index), ROWS_PER_PASS):
            rows = index[start : start + ROWS_PER_PASS]
            batch = found.corrupt[None].expand(len(rows), -1)
            with attached([(_module(blocks[layer], place), _patcher(source, rows))]):
                out.append(_run(handle, batch, adapter))
    return torch.cat(out)


@gpu.task()
def patch(
    handle: Any,
    clean: str,
    corrupt: str,
    *,
    target: str,
    foil: str | None = None,
    places: Sequence[str] = ("residual",),
    adapter: str | None = None,
) -> dict[str, Any]:
    """The logit difference after patching each (layer, position), for each place (one pass per layer and
    place, every position at once: the attention's and the MLP's grids triple the time, so they are asked for).

    Returns {"grid" (the residual stream's [layer][position] logit differences), "layers", "positions",
    "clean_logit_diff", "corrupt_logit_diff", "grids" {place: grid}, "recovered" {place: grid of
    (patched - corrupt) / (clean - corrupt)}, "target", "foil", "clean_top", "corrupt_top"}.
    """
    for place in places:
        if place not in PLACES:
            raise InvalidParameter("places", f"must be among {', '.join(PLACES)}, got {place!r}")
    found = prepare(handle, clean, corrupt, target, foil, adapter)
    n_layers = len(found.recorded["residual"])
    positions = [[p] for p in range(found.corrupt.numel())]
    clean_diff = float(_diff(found.clean_logits, found))
    corrupt_diff = float(_diff(found.corrupt_logits, found))
    span = clean_diff - corrupt_diff
    grids: dict[str, list[list[float]]] = {}
    recovered: dict[str, list[list[float]]] = {}
    for place in places:
        rows = [
            _diff(patched_logits(handle, found, place=place, layer=layer, positions=positions, adapter=adapter), found)
            for layer in range(n_layers)
        ]
        grids[place] = [[round(float(v), 4) for v in row] for row in rows]
        recovered[place] = [[round((float(v) - corrupt_diff) / span, 4) if span else 0.0 for v in row] for row in rows]
    tokenizer = handle.tokenizer
    return {
        "grid": grids.get("residual", next(iter(grids.values()), [])),
        "layers": list(range(n_layers)),
        "positions": _described(tokenizer, found.corrupt.tolist()),
        "clean_positions": _described(tokenizer, found.clean.tolist()),
        "clean_logit_diff": round(clean_diff, 4),
        "corrupt_logit_diff": round(corrupt_diff, 4),
        "grids": grids,
        "recovered": recovered,
        "target": {"id": found.target, "token": _piece(tokenizer, found.target)},
        "foil": {"id": found.foil, "token": _piece(tokenizer, found.foil)},
        "clean_top": _top(tokenizer, found.clean_logits),
        "corrupt_top": _top(tokenizer, found.corrupt_logits),
    }


def _top(tokenizer: Any, logits: torch.Tensor, n: int = TOP) -> list[dict[str, Any]]:
    probs = torch.softmax(logits.float(), dim=-1)
    values, ids = torch.topk(probs, n)
    return [
        {"id": int(i), "token": _piece(tokenizer, int(i)), "prob": round(float(p), 5)}
        for p, i in zip(values, ids, strict=False)
    ]


@gpu.task()
def patch_one(
    handle: Any,
    clean: str,
    corrupt: str,
    *,
    target: str,
    layer: int,
    position: int,
    place: str = "residual",
    foil: str | None = None,
    adapter: str | None = None,
) -> dict[str, Any]:
    """One cell: the corrupted run's next-token distribution with that one activation patched, beside the
    clean and corrupted runs' own."""
    found = prepare(handle, clean, corrupt, target, foil, adapter)
    logits = patched_logits(handle, found, place=place, layer=int(layer), positions=[[int(position)]], adapter=adapter)
    tokenizer = handle.tokenizer
    return {
        "layer": int(layer),
        "position": int(position),
        "place": place,
        "token": _piece(tokenizer, int(found.corrupt[int(position)])),
        "logit_diff": round(float(_diff(logits[0], found)), 4),
        "clean_logit_diff": round(float(_diff(found.clean_logits, found)), 4),
        "corrupt_logit_diff": round(float(_diff(found.corrupt_logits, found)), 4),
        "patched_top": _top(tokenizer, logits[0]),
        "clean_top": _top(tokenizer, found.clean_logits),
        "corrupt_top": _top(tokenizer, found.corrupt_logits),
        "target": {"id": found.target, "token": _piece(tokenizer, found.target)},
        "foil": {"id": found.foil, "token": _piece(tokenizer, found.foil)},
    }
