"""Inside the model: its tokens, the likelihood of any text, attention, the logit lens and its parts.

Each view is one forward pass of the loaded fp32 transformers model (the base, or the sidebar's
LoRA adapter), never of the lean fp16 decoder: these are the numbers the lectures define, and the
ones fine-tuning optimises. Attention weights need the eager attention kernel (SDPA returns none),
so the attention view switches the model to it for its one pass, under the model's lock.

The logit lens reads the residual stream after each block through forward hooks and passes it
through the model's own final norm and output head, so the last layer's row is exactly the
model's prediction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from pipelines import gpu, knobs
from pipelines.engine.model_structure import base_named_modules, decoder_blocks, tuner_layer_type
from pipelines.errors import InvalidParameter, PlaygroundError
from pipelines.knobs import knob

from .hooks import recorded

MAX_TOKENS = 512  # the views are quadratic in tokens (attention) or in tokens x layers (lens)
MAX_TOKENIZED = 4_096  # the token view: one coloured span per token
MAX_CONTEXT = 10_000_000  # the KV-cache arithmetic's context length


@dataclass(frozen=True)
class AttentionSpec:
    """Which attention weights the Attention view shows; the model's own sizes bound them further."""

    layer: int = knob(3, help="which decoder block (0 = the first)", label="Layer", low=0, high=1023, step=1)
    head: int = knob(0, help="which attention head of the block", label="Head", low=0, high=1023, step=1)
    mean: bool = knob(
        False,
        help="the mean over the block's heads instead of one head",
        label="mean over heads",
        cli="`inside attention` shows the mean when --head is not given",
    )

    def __post_init__(self) -> None:
        knobs.check(self)


@dataclass(frozen=True)
class ArchitectureSpec:
    """The context length the KV-cache size is computed for."""

    context: int = knob(
        8192,
        help="tokens of context for the KV-cache size",
        label="Context length for the KV cache (tokens)",
        low=1,
        high=MAX_CONTEXT,
        slider=False,
    )

    def __post_init__(self) -> None:
        knobs.check(self)


NEUTRAL_PREFIX = "Here is a short text:"  # scored before a whole text, so its first token counts too


class InsideError(PlaygroundError, ValueError):
    """A view cannot be computed for this model or adapter; the message says why."""


# --- tokens ------------------------------------------------------------------------------------


def _piece(tokenizer: Any, token_id: int) -> str:
    return str(tokenizer.convert_ids_to_tokens(int(token_id)))


def _described(tokenizer: Any, ids: Sequence[int]) -> list[dict[str, Any]]:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return [
        {
            "id": int(i),
            "piece": _piece(tokenizer, i),
            "text": tokenizer.decode([int(i)]),
            "special": int(i) in special,
        }
        for i in ids
    ]


def _checked_text(text: str | None, param: str) -> str:
    if text is None or not str(text).strip():
        raise InvalidParameter(param, "is empty")
    return str(text)


def _checked_length(ids: Sequence[int], param: str, limit: int) -> None:
    if len(ids) > limit:
        raise InvalidParameter(param, f"is {len(ids)} tokens; these views take at most {limit}")


def tokens(tokenizer: Any, text: str, *, as_chat: bool = False) -> dict[str, Any]:
    """The text as the model reads it: ids, the tokenizer's own pieces (`Ġ` = a leading space in
    byte-level BPE), what each decodes to, and which are special (the chat template's markers)."""
    text = _checked_text(text, "text")
    if as_chat:
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        ids = list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
    else:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    _checked_length(ids, "text", MAX_TOKENIZED)  # one span per token in the page: 100,000 characters were 50,000
    found = _described(tokenizer, ids)
    return {
        "tokens": found,
        "characters": len(text),
        "count": len(found),
        "characters_per_token": len(text) / len(found) if found else None,
        "as_chat": as_chat,
    }


# --- one forward pass --------------------------------------------------------------------------


def _limit(handle: Any) -> int:
    return min(MAX_TOKENS, int(getattr(handle, "context_window", MAX_TOKENS) or MAX_TOKENS))


def _check_adapter(handle: Any, adapter: str | None) -> None:
    if adapter and handle.is_prompt_tuning(adapter):
        raise InsideError(
            f"adapter {adapter!r} is a prompt-tuning adapter: its virtual tokens have no text to show; "
            "inspect the base model or a LoRA adapter"
        )


def _logits_pass(handle: Any, ids: Sequence[int], adapter: str | None, **options: Any) -> Any:
    _check_adapter(handle, adapter)
    input_ids = torch.tensor([list(ids)], device=handle.device)
    with handle.locked():
        return handle.forward(adapter, input_ids=input_ids, **options)


def _logprobs(handle: Any, ids: Sequence[int], adapter: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities of every next token [positions-1, vocab], of the actual ones [positions-1])."""
    logits = _logits_pass(handle, ids, adapter).logits[0, :-1].float()
    table = torch.log_softmax(logits, dim=-1)
    targets = torch.tensor(list(ids)[1:], device=table.device)
    return table, table.gather(1, targets[:, None])[:, 0]


@gpu.task()
def perplexity(handle: Any, text: str, *, adapter: str | None = None, truncate: bool = False) -> dict[str, Any]:
    """Per-token log-probabilities of a text, its mean loss and perplexity = exp(mean loss).

    The first token has no prediction (nothing comes before it), so the loss averages over the
    others: the same quantity as `model(input_ids, labels=input_ids).loss`, which fine-tuning
    minimises on its answers. A text over the views' limit is refused, or with `truncate` scored
    over its first window.
    """
    tokenizer = handle.tokenizer
    if truncate:  # a long document's first window stands for it (a filter over many texts must not refuse one)
        ids = handle.tokenizer(_checked_text(text, "text"), add_special_tokens=False)["input_ids"][: _limit(handle)]
    else:
        ids = _prompt_ids(handle, text, "text")
    if len(ids) < 2:
        raise InvalidParameter("text", "needs at least two tokens: the first one is never predicted")
    table, chosen = _logprobs(handle, ids, adapter)
    ranks = (table > chosen[:, None]).sum(dim=-1) + 1
    described = _described(tokenizer, ids)
    for index, entry in enumerate(described):
        entry["logprob"] = None if index == 0 else float(chosen[index - 1])
        entry["rank"] = None if index == 0 else int(ranks[index - 1])
    mean_loss = float(-chosen.mean())
    return {
        "tokens": described,
        "total_logprob": float(chosen.sum()),
        "mean_loss": mean_loss,
        "perplexity": math.exp(mean_loss),
        "scored_tokens": int(chosen.numel()),
    }


@gpu.task()
def score(handle: Any, prompt: str, continuation: str, *, adapter: str | None = None) -> dict[str, Any]:
    """log P(continuation | prompt) = the sum of its tokens' log-probabilities, and each token's rank.

    The prompt and the continuation are tokenised apart and joined (as evaluation harnesses do), so
    the continuation's tokens are the same whatever the prompt: " cool" after "LLMs are" is scored
    as the tokens of " cool". `rank` is the rank of the continuation's first token among every
    next token after the prompt (1 = the model's top choice).
    """
    prompt = _checked_text(prompt, "prompt")
    if continuation is None or continuation == "":
        raise InvalidParameter("continuation", "is empty")
    tokenizer = handle.tokenizer
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tail = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not prompt_ids:
        raise InvalidParameter("prompt", "has no tokens")
    ids = [*prompt_ids, *tail]
    _checked_length(ids, "prompt", _limit(handle))
    table, chosen = _logprobs(handle, ids, adapter)
    start = len(prompt_ids) - 1
    scored = chosen[start:]
    ranks = (table[start:] > scored[:, None]).sum(dim=-1) + 1
    described = _described(tokenizer, tail)
    for index, entry in enumerate(described):
        entry["logprob"] = float(scored[index])
        entry["rank"] = int(ranks[index])
    total = float(scored.sum())
    top = int(table[start].argmax())
    return {
        "prompt_tokens": len(prompt_ids),
        "tokens": described,
        "logprob": total,
        "prob": math.exp(total),
        "rank": int(ranks[0]),
        "top_next": {"id": top, "piece": _piece(tokenizer, top), "prob": math.exp(float(table[start, top]))},
    }


def compare(handle: Any, prompt: str, first: str, second: str, *, adapter: str | None = None) -> dict[str, Any]:
    """Two continuations of one prompt: each scored, and how many times likelier the first is."""
    a = score(handle, prompt, first, adapter=adapter)
    b = score(handle, prompt, second, adapter=adapter)
    return {"first": a, "second": b, "ratio": math.exp(a["logprob"] - b["logprob"])}


# --- attention ---------------------------------------------------------------------------------


@contextmanager
def _eager_attention(base: Any) -> Iterator[None]:
    """The eager kernel for one pass (it returns the weights SDPA does not), then back."""
    before = base.config._attn_implementation
    if before == "eager":
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(before)


def _prompt_ids(handle: Any, text: str, param: str = "prompt") -> list[int]:
    """A text's token ids as the views read it (no special tokens), checked and within the limit."""
    ids = handle.tokenizer(_checked_text(text, param), add_special_tokens=False)["input_ids"]
    _checked_length(ids, param, _limit(handle))
    return list(ids)


def shape(handle: Any) -> dict[str, int]:
    """Layers and heads, to check indices against (and for the UI's pickers)."""
    config = handle.base_model.config
    return {
        "layers": int(config.num_hidden_layers),
        "heads": int(config.num_attention_heads),
        "kv_heads": int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads),
    }


@gpu.task()
def attention(
    handle: Any, prompt: str, *, layer: int, head: int | None = None, adapter: str | None = None
) -> dict[str, Any]:
    """The attention weights of one layer, query x key over the prompt's tokens: one head's, or
    their mean over heads when `head` is None. Row i is how token i spreads its attention over
    tokens 0..i; the causal mask makes everything above the diagonal exactly zero."""
    AttentionSpec(layer=int(layer), head=0 if head is None else int(head), mean=head is None)
    sizes = shape(handle)
    if not 0 <= int(layer) < sizes["layers"]:
        raise InvalidParameter("layer", f"must be between 0 and {sizes['layers'] - 1}, got {layer}")
    if head is not None and not 0 <= int(head) < sizes["heads"]:
        raise InvalidParameter("head", f"must be between 0 and {sizes['heads'] - 1}, got {head}")
    ids = _prompt_ids(handle, prompt)
    with handle.locked(), _eager_attention(handle.base_model):
        output = _logits_pass(handle, ids, adapter, output_attentions=True)
    weights = output.attentions[int(layer)][0].float()  # [heads, query, key]
    chosen = weights.mean(dim=0) if head is None else weights[int(head)]
    return {
        "tokens": _described(handle.tokenizer, ids),
        "layer": int(layer),
        "head": None if head is None else int(head),
        "weights": [[round(float(v), 6) for v in row] for row in chosen],
    }


# --- logit lens --------------------------------------------------------------------------------


@gpu.task()
def lens(handle: Any, prompt: str, *, adapter: str | None = None, translators: Any | None = None) -> dict[str, Any]:
    """For each layer and position: the top next token when the residual stream after that block
    is read through the final norm and the output head, with its probability, the probability
    the layer gives the model's final prediction (how early the answer forms), and each layer's
    KL divergence from the final distribution (mean over positions). `translators` (a tuned lens's,
    pipelines/inside/tuned_lens.py: `bundled_for(handle)`): the same through them too, under "tuned"."""
    ids = _prompt_ids(handle, prompt)
    base = handle.base_model
    norm = base.get_decoder().norm
    head = base.get_output_embeddings()
    with handle.locked():
        with recorded(decoder_blocks(base)) as streams:
            output = _logits_pass(handle, ids, adapter)
        final_logits = output.logits[0].float()
        readings = {"logit": _read_streams(streams, norm, head, final_logits)}
        if translators is not None:
            with torch.no_grad():
                shifted = [translators.translate(n, s[0])[None] for n, s in enumerate(streams)]
            readings["tuned"] = _read_streams(shifted, norm, head, final_logits)
    tokenizer = handle.tokenizer
    final_top = final_logits.argmax(dim=-1)
    report: dict[str, Any] = {
        "tokens": _described(tokenizer, ids),
        "final": [{"id": int(i), "token": _piece(tokenizer, int(i))} for i in final_top.tolist()],
    }
    for name, (top_prob, top_id, final_prob, kl) in readings.items():
        view = {
            "layers": [
                [
                    {"id": int(i), "token": _piece(tokenizer, int(i)), "prob": round(float(p), 6)}
                    for i, p in zip(ids_, probs, strict=False)
                ]
                for ids_, probs in zip(top_id.tolist(), top_prob.tolist(), strict=False)
            ],
            "final_prob": [[round(float(p), 6) for p in row] for row in final_prob.tolist()],
            "kl": [round(float(v), 5) for v in kl.tolist()],
        }
        if name == "logit":
            report.update(view)
        else:
            report["tuned"] = view
    return report


LENS_LAYERS_PER_PASS = 3  # the head's GEMM over 3 layers' positions at once runs ~30% faster than one by one


def _read_streams(
    streams: Sequence[torch.Tensor], norm: Any, head: Any, final_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each layer's stream through the final norm and the head, a few layers per matrix product:
    (top probability, top id, probability of the final prediction) [layers, positions] and the mean
    KL(final || layer) over positions [layers].

    Probabilities come from the log-sum-exp over the vocabulary, never a full softmax table
    (30 layers x 64 positions x 49,152 tokens would be 380 MB).
    """
    stacked = torch.stack([stream[0] for stream in streams])  # [layers, positions, hidden]
    layers, positions, _ = stacked.shape
    final_top = final_logits.argmax(dim=-1)
    final_log = torch.log_softmax(final_logits, dim=-1)  # [positions, vocab]
    final_p = final_log.exp()
    negative_entropy = (final_p * final_log).sum(dim=-1)  # [positions]
    top_prob, top_id, final_prob, kl = [], [], [], []
    for start in range(0, layers, LENS_LAYERS_PER_PASS):
        chunk = stacked[start : start + LENS_LAYERS_PER_PASS]
        logits = torch.nn.functional.linear(norm(chunk), head.weight, getattr(head, "bias", None)).float()
        normaliser = torch.logsumexp(logits, dim=-1)  # [chunk, positions]
        best, best_id = logits.max(dim=-1)
        chosen = logits.gather(-1, final_top.expand(chunk.shape[0], positions)[..., None])[..., 0]
        top_prob.append(torch.exp(best - normaliser))
        top_id.append(best_id)
        final_prob.append(torch.exp(chosen - normaliser))
        # KL(final || layer) = sum p log p - sum p (logits - normaliser); the einsum needs no vocab-sized temporary
        expected = torch.einsum("pv,cpv->cp", final_p, logits)
        kl.append((negative_entropy - expected + normaliser).mean(dim=-1))
    return torch.cat(top_prob), torch.cat(top_id), torch.cat(final_prob), torch.cat(kl)


# --- architecture ------------------------------------------------------------------------------


def _own_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return list(module.named_parameters(recurse=False))


def _tree(name: str, module: torch.nn.Module, seen: set[int]) -> dict[str, Any]:
    """A module with its own weights' shapes, its parameter count (shared weights counted once,
    where first met) and its children; a list of identical blocks is one entry with `repeat`.
    An adapter's layers are read as the base layers they wrap."""
    tuner = tuner_layer_type()
    if tuner and isinstance(module, tuner):
        module = module.get_base_layer()  # type: ignore[attr-defined]  # PEFT's BaseTunerLayer
    weights = []
    count = 0
    for weight_name, p in _own_parameters(module):
        shared = id(p) in seen
        seen.add(id(p))
        weights.append({"name": weight_name, "shape": list(p.shape), "tied": shared})
        count += 0 if shared else p.numel()
    children = []
    items = list(module.named_children())
    if isinstance(module, torch.nn.ModuleList) and items and len({type(m) for _, m in items}) == 1:
        first = _tree(items[0][0], items[0][1], seen)
        rest = sum(_tree(n, m, seen)["params"] for n, m in items[1:])
        first["repeat"] = len(items)
        children.append(first)
        count += first["params"] + rest
    else:
        for child_name, child in items:
            sub = _tree(child_name, child, seen)
            children.append(sub)
            count += sub["params"]
    return {"name": name, "type": type(module).__name__, "weights": weights, "params": count, "children": children}


def _part(name: str) -> str:
    lowered = name.lower()
    if "embed" in lowered:
        return "embedding"
    if "attn" in lowered or "attention" in lowered:
        return "attention"
    if "mlp" in lowered or "feed_forward" in lowered:
        return "mlp"
    if "norm" in lowered:
        return "norm"
    if "head" in lowered:
        return "head"
    return "other"


def kv_cache(config: Any, *, dtype_bytes: int = 2, context: int | None = None) -> dict[str, Any]:
    """Bytes the KV cache takes per token: keys and values, per layer, per key-value head.

    With grouped-query attention several query heads share one key-value head, so the cache is
    heads / kv_heads times smaller than with one key-value head per query head.
    """
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    per_token = 2 * layers * kv_heads * head_dim * dtype_bytes
    without = 2 * layers * heads * head_dim * dtype_bytes
    tokens = int(context if context else getattr(config, "max_position_embeddings", 2048))
    return {
        "layers": layers,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "dtype_bytes": dtype_bytes,
        "bytes_per_token": per_token,
        "bytes_per_token_without_gqa": without,
        "gqa_saving": without / per_token,
        "context": tokens,
        "bytes_for_context": per_token * tokens,
    }


def architecture(handle: Any, *, context: int | None = None, dtype_bytes: int = 2) -> dict[str, Any]:
    """The base model as a tree of modules with shapes and parameter counts, the share of each
    part (embedding, attention, MLP, norms, head), and its KV-cache size."""
    model = handle.base_model
    if context is not None:
        ArchitectureSpec(context=int(context))
    seen: set[int] = set()
    tree = _tree(type(model).__name__, model, seen)
    total = handle.parameter_count  # the base alone: an attached adapter's weights are not the model's
    parts: dict[str, int] = {}
    counted: set[int] = set()
    for name, module in base_named_modules(model):
        for weight_name, p in _own_parameters(module):
            if id(p) in counted or "lora_" in weight_name:
                continue
            counted.add(id(p))
            parts[_part(name)] = parts.get(_part(name), 0) + p.numel()
    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return {
        "model": type(model).__name__,
        "total_params": total,
        "parts": {name: {"params": n, "share": n / total} for name, n in sorted(parts.items(), key=lambda kv: -kv[1])},
        "tied_head": tied,
        "vocab": int(config.vocab_size),
        "hidden": int(config.hidden_size),
        "intermediate": int(getattr(config, "intermediate_size", 0) or 0),
        "kv_cache": kv_cache(config, dtype_bytes=dtype_bytes, context=context),
        "tree": tree,
    }
