"""The tuned lens: a small learned translator per layer before the output head, so a mid-stack reading
predicts what the model will say rather than what the last layer's basis happens to show.

The logit lens reads layer l's residual stream h_l through the model's final norm and head. Early
layers' streams are not in the basis the head expects, so their readings look like noise even when the
information is there. The tuned lens (Belrose et al. 2023) learns, per layer, an affine map

    T_l(h) = h + (h U_l) V_l + b_l            (rank-r U_l V_l; at 0 it is the logit lens)

fitted so that head(norm(T_l(h_l))) is close to the model's final distribution:

    minimise  KL( p_final || softmax(head(norm(T_l(h_l)))) )  averaged over positions.

Here the translators are low-rank (r = 32: 2.1 MiB in fp16 for 29 layers, where full-rank maps take 19 MiB), fitted
on the project's own bundled text by `scripts/fit_tuned_lens.py`; the result ships in
assets/bundled/lenses/ with each layer's KL on held-out text, re-measured by a heavy test.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from pipelines.config import ASSETS
from pipelines.engine import bundled
from pipelines.engine.model_structure import decoder_blocks
from pipelines.train.evaluation import GENERAL_TEXT

from . import InsideError, _read_streams
from .hooks import recorded

LENSES = bundled.LENSES
NAME = "tuned-lens"
WEIGHTS = "translators.safetensors"
HELD_OUT = GENERAL_TEXT  # the forgetting probe's text: never among what the lens is fitted on


class Translators(torch.nn.Module):
    """One low-rank affine translator per layer but the last (whose stream the head reads as is)."""

    def __init__(self, layers: int, hidden: int, rank: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.down = torch.nn.Parameter(torch.randn(layers, hidden, rank, generator=generator) / math.sqrt(hidden))
        self.up = torch.nn.Parameter(torch.zeros(layers, rank, hidden))  # zero: training starts at the logit lens
        self.bias = torch.nn.Parameter(torch.zeros(layers, hidden))

    @property
    def layers(self) -> int:
        return int(self.down.shape[0])

    def translate(self, layer: int, stream: torch.Tensor) -> torch.Tensor:
        if layer >= self.layers:
            return stream
        x = stream.float()
        return x + (x @ self.down[layer]) @ self.up[layer] + self.bias[layer]


@dataclass(frozen=True)
class FitSpec:
    """How the bundled lens was fitted (a maintainer's script: these are recorded with the result)."""

    rank: int = 32
    steps: int = 250
    positions: int = 48  # per step, sampled from the cached streams
    context: int = 128  # tokens per training row
    rows: int = 48  # training rows (positions cached: rows x (context - 1))
    lr: float = 2e-3
    seed: int = 0


def _frozen(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module with its weights detached: gradients reach the translators, never the model."""
    weights = {name: p.detach() for name, p in module.named_parameters()}
    return lambda x: functional_call(module, weights, (x,))


def _reader(handle: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Stream -> logits through the model's own final norm and output head."""
    base = handle.base_model
    norm = _frozen(base.get_decoder().norm)
    head = _frozen(base.get_output_embeddings())
    return lambda stream: head(norm(stream)).float()


def streams(handle: Any, rows: torch.Tensor, adapter: str | None = None) -> torch.Tensor:
    """The stream after every block at every position of the rows but their first (the attention sink's,
    which every row shares): [layers, positions, hidden], no gradients."""
    with handle.locked(), torch.inference_mode(), recorded(decoder_blocks(handle.base_model)) as kept:
        handle.forward(adapter, input_ids=rows.to(handle.device), logits_to_keep=1)
    stacked = torch.stack(kept).float().cpu()[:, :, 1:]  # [layers, rows, positions, hidden]
    return stacked.reshape(stacked.shape[0], -1, stacked.shape[-1])


def kl_per_layer(handle: Any, stacked: torch.Tensor, translators: Translators | None) -> list[float]:
    """Mean KL(final || layer's reading) over the positions in `stacked` ([layers, positions, hidden]),
    computed as the lens view computes it (pipelines.inside._read_streams)."""
    base = handle.base_model
    with torch.no_grad():
        final_logits = _reader(handle)(stacked[-1])
        layers = [
            (stream if translators is None else translators.translate(n, stream))[None]
            for n, stream in enumerate(stacked)
        ]
        kl = _read_streams(layers, base.get_decoder().norm, base.get_output_embeddings(), final_logits)[3]
    return [float(v) for v in kl]


def training_text() -> str:
    """The project's own prose: the How-it-works pages, the lessons' documents and the bundled samples.
    The held-out text (general_text.txt) is not among them."""
    parts = [p.read_text(encoding="utf-8") for p in sorted((ASSETS / "howto").glob("*.md"))]
    parts += [p.read_text(encoding="utf-8") for p in sorted((ASSETS / "documents").glob("*.md"))]
    parts.append((ASSETS / "datasets" / "raw_web_sample.txt").read_text(encoding="utf-8"))
    return "\n\n".join(parts)


def _rows(tokenizer: Any, text: str, context: int, limit: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    width = context - 1
    rows = [[first, *ids[i : i + width]] for i in range(0, len(ids) - width + 1, width)][:limit]
    if not rows:
        raise InsideError(f"the text has {len(ids)} tokens: at least {width} are needed")
    return torch.tensor(rows)


def fit(
    handle: Any, spec: FitSpec, *, text: str | None = None, progress: Callable[[int, float], None] | None = None
) -> tuple[Translators, dict[str, Any]]:
    """Fit the translators on cached streams (the model runs once), a few sampled positions per step."""
    torch.manual_seed(spec.seed)
    rows = _rows(handle.tokenizer, text if text is not None else training_text(), spec.context, spec.rows)
    cached = streams(handle, rows)
    layers, positions, hidden = cached.shape
    translators = Translators(layers - 1, hidden, spec.rank, spec.seed)
    optimiser = torch.optim.AdamW(translators.parameters(), lr=spec.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, spec.steps)
    read = _reader(handle)
    picker = random.Random(spec.seed)
    started = time.perf_counter()
    losses = []
    for step in range(spec.steps):
        chosen = torch.tensor(picker.sample(range(positions), min(spec.positions, positions)))
        with torch.no_grad():
            final = torch.log_softmax(read(cached[-1, chosen]), dim=-1)
        p_final = final.exp()
        optimiser.zero_grad()
        total = 0.0
        for layer in range(layers - 1):  # one layer at a time: a [positions, vocab] graph each
            reading = torch.log_softmax(read(translators.translate(layer, cached[layer, chosen])), dim=-1)
            loss = (p_final * (final - reading)).sum(dim=-1).mean() / (layers - 1)
            loss.backward()
            total += float(loss.detach())
        optimiser.step()
        schedule.step()
        losses.append(total)
        if progress is not None:
            progress(step + 1, total)
    report = {
        "positions_cached": positions,
        "training_tokens": int(rows.numel()),
        "seconds": round(time.perf_counter() - started, 1),
        "loss_first": losses[0],
        "loss_last": sum(losses[-10:]) / len(losses[-10:]),
    }
    return translators, report


def held_out_streams(handle: Any, context: int = 128) -> torch.Tensor:
    """The held-out text's streams: [layers, positions, hidden]."""
    return streams(handle, _rows(handle.tokenizer, HELD_OUT.read_text(encoding="utf-8"), context, 1_000))


def compare(handle: Any, translators: Translators) -> dict[str, Any]:
    """Each layer's KL to the final distribution on held-out text, logit lens vs tuned lens."""
    stacked = held_out_streams(handle)
    logit = kl_per_layer(handle, stacked, None)
    tuned = kl_per_layer(handle, stacked, translators)
    inner = slice(0, len(logit) - 1)  # the last layer is the model's own output under both lenses
    return {
        "positions": int(stacked.shape[1]),
        "kl_logit_lens": [round(v, 4) for v in logit],
        "kl_tuned_lens": [round(v, 4) for v in tuned],
        "kl_logit_lens_mean": sum(logit[inner]) / len(logit[inner]),
        "kl_tuned_lens_mean": sum(tuned[inner]) / len(tuned[inner]),
    }


def save(translators: Translators, directory: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from pipelines.store.files import write_atomic

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().to(torch.float16).contiguous() for name, p in translators.named_parameters()}
    save_file(tensors, str(directory / WEIGHTS))
    write_atomic(directory / "meta.json", json.dumps(meta, indent=2))


def load(directory: Path) -> tuple[Translators, dict[str, Any]]:
    from safetensors.torch import load_file

    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / WEIGHTS))
    layers, hidden, rank = tensors["down"].shape
    translators = Translators(layers, hidden, rank)
    translators.load_state_dict({k: v.float() for k, v in tensors.items()})
    return translators.eval(), meta


_loaded: dict[str, tuple[Translators, dict[str, Any]]] = {}


def bundled_for(handle: Any) -> Translators:
    """The shipped translators, when they were fitted for the loaded model; why not otherwise."""
    directory = LENSES / NAME
    if NAME not in _loaded:
        if not (directory / WEIGHTS).is_file():
            raise InsideError("no tuned lens is shipped with this copy (assets/bundled/lenses/tuned-lens)")
        _loaded[NAME] = load(directory)
    translators, meta = _loaded[NAME]
    layers = len(decoder_blocks(handle.base_model))
    fitted_for = meta.get("base_model")
    if (
        fitted_for != getattr(handle, "name", None)
        or translators.layers != layers - 1
        or translators.bias.shape[1] != int(handle.base_model.config.hidden_size)
    ):
        raise InsideError(
            f"the shipped tuned lens was fitted for {fitted_for}, not {getattr(handle, 'name', 'this model')}: "
            "fit one for it with scripts/fit_tuned_lens.py"
        )
    return translators


def bundled_figures(path: Path, meta: dict[str, Any]) -> dict[str, float]:
    """The shipped lens re-measured: mean KL over the inner layers on held-out text, both lenses."""
    from pipelines.engine import models

    translators, _ = load(path)
    found = compare(models.get_handle(), translators)
    return {key: float(found[key]) for key in ("kl_logit_lens_mean", "kl_tuned_lens_mean")}
