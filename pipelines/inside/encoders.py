"""Model families beside the decoder the app serves: what an encoder (BERT) and an encoder-decoder
(T5) are trained to do, shown live on text (issue 38, goal 1).

- **Masked language modelling** (BERT): 15% of the tokens are chosen; of those 80% become [MASK],
  10% a random token and 10% stay as they are, and the model predicts every chosen one from both
  sides. The masking here is transformers' own `DataCollatorForLanguageModeling` (what BERT-style
  training runs), applied to your text. (No fill-mask model yet: the only encoder that installs
  offline is all-MiniLM-L6-v2, a sentence embedder whose MLM head was not kept, and a head trained
  here on the bundled text reached 7-8% top-1 on held-out masks: too weak to show; issue 38.)
- **Bidirectional vs causal attention**: the same sentence through the encoder (every token sees
  every other) and through the app's decoder (token i sees 0..i only).
- **Sentence-order prediction** (ALBERT): the training pairs are two consecutive sentences, in order
  (positive) or swapped (negative); here the decoder's likelihood of each order shows that the
  order is learnable from text alone.
- **Span corruption** (T5): ~15% of the tokens, in spans of mean length 3, are replaced by
  sentinels <extra_id_0>, <extra_id_1>, ... in the input; the target lists each sentinel with the
  span it hides, and a final sentinel.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipelines import knobs
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob

MASK_PROBABILITY = 0.15
MAX_TEXT_TOKENS = 256


@dataclass(frozen=True)
class MaskingSpec:
    """How a text is corrupted for a masked (BERT) or span-corruption (T5) objective."""

    probability: float = knob(
        MASK_PROBABILITY,
        help="share of the tokens chosen for prediction",
        label="Share chosen",
        low=0.01,
        high=0.9,
        step=0.01,
    )
    mean_span: float = knob(
        3.0, help="T5: mean length of a corrupted span, in tokens", label="Mean span", low=1, high=10, step=0.5
    )
    seed: int = knob(
        0,
        help="which random draw (the same seed draws the same tokens)",
        label="Seed",
        low=0,
        high=2**31 - 1,
        slider=False,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


def _text(text: str | None) -> str:
    if text is None or not str(text).strip():
        raise InvalidParameter("text", "is empty")
    return str(text)


def span_noise_mask(length: int, probability: float, mean_span: float, rng: random.Random) -> list[bool]:
    """T5's random spans: round(length · probability) noise tokens in round(noise / mean_span) spans,
    spans and the gaps between them of random lengths (Raffel et al. 2020, section 3.1.4)."""
    noise = max(1, min(length - 1, round(length * probability)))
    spans = max(1, min(noise, length - noise, round(noise / mean_span)))

    def split(total: int, parts: int) -> list[int]:  # `total` items in `parts` non-empty groups, at random
        cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
        return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]

    mask: list[bool] = []
    for gap, span in zip(split(length - noise, spans), split(noise, spans), strict=True):
        mask += [False] * gap + [True] * span
    return mask


def span_corruption(tokenizer: Any, text: str, spec: MaskingSpec | None = None) -> dict[str, Any]:
    """The T5 input (spans replaced by sentinels) and target (each sentinel, then the span it hides)."""
    spec = spec or MaskingSpec()
    pieces = tokenizer.tokenize(_text(text))[:MAX_TEXT_TOKENS]
    if len(pieces) < 2:
        raise InvalidParameter("text", "needs at least two tokens to corrupt a span of it")
    mask = span_noise_mask(len(pieces), spec.probability, spec.mean_span, random.Random(spec.seed))
    inputs: list[str] = []
    targets: list[str] = []
    sentinel = 0
    for index, (piece, noisy) in enumerate(zip(pieces, mask, strict=True)):
        starts = noisy and (index == 0 or not mask[index - 1])
        if starts:
            inputs.append(f"<extra_id_{sentinel}>")
            targets.append(f"<extra_id_{sentinel}>")
            sentinel += 1
        (targets if noisy else inputs).append(piece)
    targets.append(f"<extra_id_{sentinel}>")
    return {
        "tokens": [{"piece": p, "corrupted": m} for p, m in zip(pieces, mask, strict=True)],
        "input": inputs,
        "target": targets,
        "spans": sentinel,
        "corrupted": sum(mask),
    }


def mlm_masking(tokenizer: Any, text: str, spec: MaskingSpec | None = None, *, draws: int = 2000) -> dict[str, Any]:
    """BERT's masking of `text` by transformers' `DataCollatorForLanguageModeling` (seeded): which
    tokens were chosen and what each became ([MASK], a random token, or itself), and the same
    recipe measured over `draws` independent draws of the text (15% chosen; 80 / 10 / 10)."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    spec = spec or MaskingSpec()
    ids = tokenizer(_text(text), truncation=True, max_length=MAX_TEXT_TOKENS)["input_ids"]

    def draw(copies: int, seed: int) -> tuple[Any, ...]:
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=spec.probability, seed=seed)
        batch = collator([{"input_ids": ids} for _ in range(copies)])
        inputs, chosen = batch["input_ids"], batch["labels"] != -100
        masked = chosen & (inputs == tokenizer.mask_token_id)
        kept = chosen & (inputs == torch.tensor(ids).expand_as(inputs))
        return inputs, chosen, masked, kept, chosen & ~masked & ~kept

    inputs, chosen, masked, kept, _ = draw(1, spec.seed)  # the one shown: the seed alone decides it
    _, all_chosen, all_masked, all_kept, all_replaced = draw(draws, spec.seed + 1)  # the recipe, measured
    special = set(tokenizer.all_special_ids)
    eligible = sum(1 for i in ids if i not in special) * draws

    def became(position: int) -> str | None:
        if not chosen[0, position]:
            return None
        return "mask" if masked[0, position] else "kept" if kept[0, position] else "random"

    total = int(all_chosen.sum())
    return {
        "tokens": [
            {
                "piece": tokenizer.convert_ids_to_tokens(token),
                "shown": tokenizer.convert_ids_to_tokens(int(inputs[0, n])),
                "became": became(n),
                "special": token in special,
            }
            for n, token in enumerate(ids)
        ],
        "measured": {
            "draws": draws,
            "chosen_share": total / max(1, eligible),
            "mask_share": int(all_masked.sum()) / max(1, total),
            "random_share": int(all_replaced.sum()) / max(1, total),
            "kept_share": int(all_kept.sum()) / max(1, total),
        },
    }


@lru_cache(maxsize=1)
def encoder() -> tuple[Any, Any]:
    """(tokenizer, BertModel) of all-MiniLM-L6-v2, the RAG tab's embedder, with eager attention so its
    weights can be read (once per process)."""
    from transformers import AutoTokenizer, BertModel

    from pipelines.engine.model_source import embedder_path

    path = embedder_path()
    model = BertModel.from_pretrained(path, attn_implementation="eager", local_files_only=True).eval()
    return AutoTokenizer.from_pretrained(path, local_files_only=True), model


def _above_diagonal(weights: list[list[float]]) -> float:
    """The share of attention that goes to later tokens (0 for a causal model)."""
    total = sum(sum(row) for row in weights)
    later = sum(value for i, row in enumerate(weights) for j, value in enumerate(row) if j > i)
    return later / total if total else 0.0


def attention_both_ways(handle: Any, text: str, *, layer: int = -1) -> dict[str, Any]:
    """The same sentence through the encoder (bidirectional) and the app's decoder (causal): each
    model's attention, averaged over heads, in its last layer (or `layer`), and the share of it that
    reaches tokens to the right."""
    import torch

    from pipelines import inside

    tokenizer, model = encoder()
    encoded = tokenizer(_text(text), truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt")
    with torch.inference_mode():
        found = model(**encoded, output_attentions=True).attentions
    chosen = found[layer if layer < 0 else min(layer, len(found) - 1)][0].float().mean(dim=0)
    bidirectional = [[round(float(v), 6) for v in row] for row in chosen]
    decoder_layers = inside.shape(handle)["layers"]
    causal = inside.attention(
        handle, text, layer=layer % decoder_layers if layer < 0 else min(layer, decoder_layers - 1)
    )
    return {
        "encoder": {
            "model": "all-MiniLM-L6-v2 (BERT encoder)",
            "tokens": tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist()),
            "weights": bidirectional,
            "to_the_right": _above_diagonal(bidirectional),
        },
        "decoder": {
            "model": getattr(handle, "name", "the app's model"),
            "tokens": [t["piece"] for t in causal["tokens"]],
            "weights": causal["weights"],
            "to_the_right": _above_diagonal(causal["weights"]),
        },
    }


def sentence_order(handle: Any, first: str, second: str) -> dict[str, Any]:
    """ALBERT's sentence-order prediction: the pair in order is a positive example, swapped a
    negative. The decoder's log-likelihood of each order (`inside.perplexity`) shows that order is
    in the text: which order does the model find likelier, and by how much?"""
    from pipelines import inside

    first, second = (first or "").strip(), (second or "").strip()
    if not first or not second:
        raise InvalidParameter("text", "give two sentences")
    # every token scored after the same neutral prefix: the first sentence's first token counts too
    in_order = inside.score(handle, inside.NEUTRAL_PREFIX, f" {first} {second}")
    swapped = inside.score(handle, inside.NEUTRAL_PREFIX, f" {second} {first}")
    margin = in_order["logprob"] - swapped["logprob"]
    return {
        "in_order": {"text": f"{first} {second}", "log_likelihood": in_order["logprob"], "label": "positive"},
        "swapped": {"text": f"{second} {first}", "log_likelihood": swapped["logprob"], "label": "negative"},
        "log_ratio": margin,
        "model_prefers": "in order" if margin > 0 else "swapped",
    }
