"""How much memory a fine-tuning run needs at its peak, by method, from the model's shapes.

Why a model of the tensors rather than bytes-per-parameter rules: activation memory depends on
batch size, sequence length, layers, hidden and MLP sizes, the vocabulary, gradient checkpointing
and precision, not on how many weights train. LoRA trains 1% of the weights but saves *more*
activations than full fine-tuning (each adapted layer keeps its own dropout copy of its input),
and for a small model with a large vocabulary the biggest activation is the logits.

The terms, in the order the peak meets them:

- weights: every parameter in its storage precision (fp32 master weights; QLoRA: NF4, 4.13 bits
  with double-quantised block scales, for the quantised linear layers, 16 bits for the rest);
  under mixed precision, autocast also keeps 16-bit copies of the matmul weights for the step.
- optimizer: AdamW's two fp32 moments per trainable parameter.
- activations: what autograd saves for the backward pass, per token, counted tensor by tensor
  for transformers' Llama implementation (`saved_elements`; a test walks the autograd graph and
  checks the count). Blocks below the lowest trainable one save nothing; frozen blocks above it
  save what the input gradient needs; gradient checkpointing keeps one tensor per block and
  recomputes one block at a time.
- loss: the backward pass starts with the gradient of the loss w.r.t. the logits, in fp32:
  `LOSS_PEAK_LOGITS` logits-sized tensors live at once (measured with torch's memory profiler).
- gradients: one per trainable parameter; at the activation peak only the output head's exists
  (when it trains); afterwards the optimizer step holds all of them plus a temporary.

The peak is the larger of the activation peak and the optimizer-step peak. `bench/memory_bench.py`
checks it against torch's memory profiler on real 2-step runs of the bundled model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.errors import InvalidParameter

# Logits-sized fp32 tensors alive at the start of the backward pass beyond the saved log-softmax
# output (the loss's gradient through NLL, log-softmax and the head): torch's memory profiler on
# transformers 5 + trl 1.16 found 5.2 at every batch and length measured, one of them the saved output.
LOSS_PEAK_LOGITS = 4.2
NF4_BYTES = 4.127 / 8  # 4-bit weights + double-quantised absmax per 64-weight block (QLoRA paper, Appendix)
MIB = 2**20
BASES = ("fp32", "16bit", "nf4")  # how a plan's base weights are stored

ATTENTION_INPUTS = ("q_proj", "k_proj", "v_proj")
MLP_INPUTS = ("gate_proj", "up_proj")


@dataclass(frozen=True)
class ModelShape:
    """The sizes the activation count needs, read from a transformers config."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    params: int
    linear_params: int  # weights of the blocks' linear layers (what QLoRA quantises, autocast copies)
    head_params: int  # the output head's weight (shared with the input embedding when tied)

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        from pipelines.engine import model_structure

        config = model.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        linear = sum(m.weight.numel() for _, m in model_structure.linear_layers(model))
        layers = config.num_hidden_layers
        embed = model.get_input_embeddings().weight.numel()
        total = model_structure.parameter_count(model)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        head = embed if tied else model.get_output_embeddings().weight.numel()
        return cls(
            layers=layers,
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            vocab=config.vocab_size,
            params=total,
            linear_params=linear,
            head_params=head,
        )

    def in_features(self, target: str) -> int:
        return {"o_proj": self.heads * self.head_dim, "down_proj": self.intermediate}.get(target, self.hidden)


def saved_elements(
    shape: ModelShape,
    block: str,
    *,
    lora_targets: Sequence[str] = (),
    lora_r: int = 0,
    lora_dropout: float = 0.0,
) -> int:
    """Elements autograd saves per token in one decoder block; `block` is "full" (its weights
    train), "frozen" (only the input gradient flows through it) or "lora" (frozen + adapters).

    Full: both RMSNorms keep their input, normalised input and output (3H), the attention keeps q,
    k, v, its output and log-sum-exp (2H + 2·kv + heads), o_proj its input (H), and the SwiGLU MLP
    its gate, SiLU output, up and product (4I): 8H + 4I + 2·kv + heads + 2.
    A frozen block needs no linear layer's input (weight gradients only) nor the norms' outputs.
    """
    h, i = shape.hidden, shape.intermediate
    kv = shape.kv_heads * shape.head_dim
    if block == "full":
        return 8 * h + 4 * i + 2 * kv + shape.heads + 2
    frozen = 4 * h + 3 * i + 2 * kv + shape.heads + 2
    if block == "frozen" or not lora_targets:
        return frozen
    targets = set(lora_targets)
    extra = lora_r * len(targets)  # each adapter's A·x, kept for B's gradient
    if lora_dropout > 0:  # each adapted layer's own dropout copy of its input, and the mask
        extra += sum(2 * shape.in_features(t) for t in targets)
    else:  # the inputs LoRA's A needs, shared with the frozen layer's
        # (o_proj's input, the attention output, is saved by a frozen block already)
        extra += h * bool(targets & set(ATTENTION_INPUTS)) + h * bool(targets & set(MLP_INPUTS))
        extra += i * ("down_proj" in targets)
    return frozen + extra


def head_elements(shape: ModelShape, trains: bool) -> int:
    """Per token after the blocks: the final norm's input (H + 1; and its output, H, when its
    weight trains), the head's input (H, when it trains), the saved log-softmax output (V) and
    the label (an int64: 2)."""
    return (3 if trains else 1) * shape.hidden + 1 + shape.vocab + 2


@dataclass
class MemoryPlan:
    """One method's peak, term by term, in bytes."""

    method: str
    trainable: int
    weights: int
    optimizer: int
    gradients: int
    activations: int
    loss: int
    peak: int
    activation_peak: int = (
        0  # activations + the loss's logits (+ the head's gradient): what data parallelism never shards
    )

    def row(self) -> dict[str, Any]:
        """The table's row; `total` is the peak."""
        row = {**asdict(self), "total": self.peak}
        row.pop("activation_peak")
        return row

    def sharded(self, stage: int, gpus: int) -> int:
        """The peak on each of `gpus` GPUs training together: DDP (stage 0) keeps everything on every
        GPU; ZeRO stage 1 shards the optimizer's states, 2 also the gradients, 3 (FSDP's full
        shard) also the weights (Rajbhandari et al. 2020). Activations are per GPU at any stage."""
        weights = self.weights / gpus if stage >= 3 else self.weights
        optimizer = self.optimizer / gpus if stage >= 1 else self.optimizer
        gradients = self.gradients / gpus if stage >= 2 else self.gradients
        return int(weights + optimizer + max(self.activation_peak, 2 * gradients))


@dataclass(frozen=True)
class Step:
    """One training step's shape: what the activations scale with."""

    batch: int = 8
    length: int = 512  # the padded length of a batch (the worst case: every example at the maximum)
    mixed_precision: bool = False  # 16-bit activations (and autocast's weight copies)
    checkpointing: bool = False  # each block keeps only its input; one is recomputed at a time


def estimate(
    shape: ModelShape,
    method: str,
    *,
    trainable: int,
    step: Step,
    train_blocks: Sequence[int] | None = None,
    lora_targets: Sequence[str] = (),
    lora_r: int = 0,
    lora_dropout: float = 0.0,
    virtual_tokens: int = 0,
    base: str = "fp32",
) -> MemoryPlan:
    """The peak of one training step for `method` ("full", "selective", "lora", "prompt-tuning").

    `length` is the padded length of a batch (the worst case: every example at the maximum);
    prompt tuning adds its virtual tokens to it. `train_blocks` (selective) are 0-based indices.
    `base`: how the base weights are stored -- "fp32" (this app's CPU runs), "16bit" (a PEFT method's
    frozen base in bf16/fp16 on a GPU) or "nf4" (QLoRA).
    """
    mixed_precision, checkpointing = step.mixed_precision, step.checkpointing
    tokens = step.batch * (step.length + (virtual_tokens if method == "prompt-tuning" else 0))
    if base not in BASES:
        raise InvalidParameter("base", f"one of {', '.join(BASES)}")
    qlora = base == "nf4"
    act_bytes = 2 if mixed_precision or qlora else 4
    # which blocks save what
    if method == "full":
        kinds = ["full"] * shape.layers
    elif method == "selective":
        chosen = set(train_blocks or [])
        lowest = min(chosen) if chosen else shape.layers
        kinds = ["none" if b < lowest else "full" if b in chosen else "frozen" for b in range(shape.layers)]
    elif method == "lora":
        kinds = ["lora"] * shape.layers
    else:
        kinds = ["frozen"] * shape.layers
    head_trains = method == "full"
    saved = {
        kind: saved_elements(shape, kind, lora_targets=lora_targets, lora_r=lora_r, lora_dropout=lora_dropout)
        for kind in set(kinds) - {"none"}
    }
    if checkpointing:  # each block keeps its input; one block at a time is recomputed in the backward pass
        per_token = shape.hidden * sum(kind != "none" for kind in kinds) + max(saved.values(), default=0)
    else:
        per_token = sum(saved[kind] for kind in kinds if kind != "none")
    activations = (
        per_token * act_bytes + head_elements(shape, head_trains) * 4
    ) * tokens  # the loss is computed on fp32 logits
    loss = int(LOSS_PEAK_LOGITS * shape.vocab * 4 * tokens)

    adapters = trainable if method in ("lora", "prompt-tuning") else 0  # new parameters beside the base
    if qlora:
        weights = int(shape.linear_params * NF4_BYTES + (shape.params - shape.linear_params) * 2) + adapters * 4
    elif base == "16bit" and method in ("lora", "prompt-tuning"):
        weights = shape.params * 2 + adapters * 4
    else:
        weights = (shape.params + adapters) * 4
        if mixed_precision:  # autocast's 16-bit copies of the matmul weights, kept for the step
            weights += (shape.linear_params + shape.head_params) * 2
    optimizer = trainable * 8
    gradients = trainable * 4
    head_grad = shape.head_params * 4 if head_trains else 0
    activation_peak = activations + loss + head_grad
    step_peak = gradients + trainable * 4  # Adam's step: every gradient and one temporary per parameter
    peak = weights + optimizer + max(activation_peak, step_peak)
    return MemoryPlan(
        method=method,
        trainable=trainable,
        weights=weights,
        optimizer=optimizer,
        gradients=gradients,
        activations=activations,
        loss=loss,
        peak=int(peak),
        activation_peak=int(activation_peak),
    )
