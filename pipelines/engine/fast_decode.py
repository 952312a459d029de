"""A lean CPU decoder for Llama-family models: fp16 weights through fbgemm, one TorchScript loop.

Why it exists: decoding one token of a small model on a CPU costs two things, reading every
weight once (memory bandwidth) and dispatching ~40 small ops per layer through transformers'
Python modules. For SmolLM2-135M on a 2-core machine the second is as large as the first. This
decoder keeps the model's own weights but

- stores them as fp16 and multiplies through fbgemm's fp16 GEMM with fp32 activations
  (`quantized::linear_dynamic_fp16`): half the bytes of fp32 at ~2e-4 relative error, where int8
  dynamic quantisation (7-bit activations) moved greedy text after a few tokens;
- fuses q/k/v and gate/up into one matmul each and folds every RMSNorm weight into the matmul
  that follows it (W·diag(g)·x/rms(x) == W·(g·x/rms(x))), so a layer is 4 matmuls;
- permutes the rows of q_proj and k_proj within each head so that transformers' half-split
  rotary layout becomes adjacent pairs, and applies RoPE as one complex multiply (q·k is
  unchanged by a permutation applied to both);
- runs the layer loop as TorchScript (no Python between ops), with a preallocated KV cache.

Only the base model decodes here: adapters, the distribution inspector, training and exact
log-probabilities stay on the transformers model. `PLAYGROUND_FAST=0` turns it off.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from pipelines.engine.prefix_cache import PrefixCache

KVCache = list[tuple[torch.Tensor, torch.Tensor]]
try:  # the prepacked fp16 weight TorchScript needs to name in `_layers`' signature
    PackedLinear: Any = torch.classes.quantized.LinearPackedParamsBase
except (AttributeError, RuntimeError):  # a torch build without quantized kernels: no fast path
    PackedLinear = Any
# rotary variants whose frequencies are fixed at load time (dynamic/longrope change with length)
STATIC_ROPE = {"default", "linear", "llama3", "yarn"}


def _layers(
    x: torch.Tensor,
    freqs: torch.Tensor,
    start: int,
    layers: list[tuple[PackedLinear, PackedLinear, PackedLinear, PackedLinear]],
    cache: list[tuple[torch.Tensor, torch.Tensor]],
    mask: torch.Tensor | None,
    dims: tuple[int, int, int, int],
    eps: float,
    head: PackedLinear,
) -> torch.Tensor:
    """Every decoder layer, then the output head on the last position: [B, T, H] -> [B, 1, V].

    `dims` is (query heads, key/value heads, head size, MLP width): one tuple, as TorchScript takes it.
    """
    n_heads, n_kv_heads, head_dim, intermediate = dims
    batch = x.shape[0]
    length = x.shape[1]
    end = start + length
    n_qk = (n_heads + n_kv_heads) * head_dim
    hidden = [x.shape[-1]]
    causal = mask is None and length > 1
    for i in range(len(layers)):
        qkv, out, gate_up, down = layers[i]
        keys, values = cache[i]
        y = torch.ops.quantized.linear_dynamic_fp16(torch.rms_norm(x, hidden, None, eps), qkv)
        qk = y[:, :, :n_qk].reshape(batch, length, n_heads + n_kv_heads, head_dim // 2, 2)
        qk = torch.view_as_real(torch.view_as_complex(qk) * freqs).flatten(3).transpose(1, 2)
        keys[:, :, start:end] = qk[:, n_heads:]
        values[:, :, start:end] = y[:, :, n_qk:].reshape(batch, length, n_kv_heads, head_dim).transpose(1, 2)
        attended = F.scaled_dot_product_attention(
            qk[:, :n_heads], keys[:, :, :end], values[:, :, :end], attn_mask=mask, is_causal=causal, enable_gqa=True
        )
        x = x + torch.ops.quantized.linear_dynamic_fp16(attended.transpose(1, 2).flatten(2), out)
        g = torch.ops.quantized.linear_dynamic_fp16(torch.rms_norm(x, hidden, None, eps), gate_up)
        x = x + torch.ops.quantized.linear_dynamic_fp16(F.silu(g[:, :, :intermediate]) * g[:, :, intermediate:], down)
    return torch.ops.quantized.linear_dynamic_fp16(torch.rms_norm(x[:, -1:], hidden, None, eps), head)


def _script(fn: Any) -> tuple[Any, bool]:
    """TorchScript `fn` when this torch can; the same function runs eagerly otherwise (slower, same result)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(fn), True
    except Exception:  # TorchScript is in maintenance mode; a torch without it still decodes
        return fn, False


_compiled: tuple[Any, bool] | None = None


def _compiled_layers() -> tuple[Any, bool]:
    global _compiled
    if _compiled is None:
        _compiled = _script(_layers)
    return _compiled


def unsupported_reason(model: Any) -> str | None:
    """Why `model` cannot use the lean decoder, or None when it can."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return "this torch build has no fbgemm fp16 kernels"
    if type(model).__name__ != "LlamaForCausalLM":
        return f"{type(model).__name__} is not a Llama-architecture model"
    config = model.config
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "the model has attention or MLP biases"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not SiLU"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    rope_type = getattr(model.model.rotary_emb, "rope_type", "default")
    if rope_type not in STATIC_ROPE:
        return f"rotary embedding {rope_type!r} changes with the sequence length"
    if next(model.parameters()).device.type != "cpu":
        return "the model is not on the CPU"
    return None


def _prefix_cache() -> PrefixCache:
    from pipelines.config import get_settings

    return PrefixCache(get_settings().prefix_cache_mb * 2**20)


def _interleave(n_heads: int, head_dim: int) -> torch.Tensor:
    """Row order that turns each head's (first half, second half) rotary pairs into adjacent pairs."""
    within = torch.arange(head_dim).view(2, head_dim // 2).t().reshape(-1)
    return torch.cat([h * head_dim + within for h in range(n_heads)])


def _pack(weight: torch.Tensor) -> Any:
    return torch.ops.quantized.linear_prepack_fp16(weight.detach().float().contiguous(), None)


@dataclass
class FastDecoder:
    """fp16 packed weights and shapes of one Llama-family model, ready to decode."""

    embed: torch.Tensor
    layers: list[tuple[Any, Any, Any, Any]]
    head: Any
    inv_freq: torch.Tensor
    rope_scale: float
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    eps: float
    n_layers: int
    scripted: bool = False
    # prompts already read, for later requests that start with them (pipelines/engine/prefix_cache.py)
    prefixes: PrefixCache = field(default_factory=_prefix_cache)

    @classmethod
    def build(cls, model: Any) -> FastDecoder:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the fast decoder cannot run this model: {reason}")
        config = model.config
        n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
        q_rows, k_rows = _interleave(n_heads, head_dim), _interleave(n_kv, head_dim)
        layers = []
        with torch.no_grad():
            for layer in model.model.layers:
                attn, mlp = layer.self_attn, layer.mlp
                norm1, norm2 = layer.input_layernorm.weight.float(), layer.post_attention_layernorm.weight.float()
                qkv = (
                    torch.cat([attn.q_proj.weight[q_rows], attn.k_proj.weight[k_rows], attn.v_proj.weight]).float()
                    * norm1
                )
                gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).float() * norm2
                layers.append((_pack(qkv), _pack(attn.o_proj.weight), _pack(gate_up), _pack(mlp.down_proj.weight)))
            head = _pack(model.lm_head.weight.float() * model.model.norm.weight.float())
            embed = model.model.embed_tokens.weight.detach().float().clone()
        rotary = model.model.rotary_emb
        fn, scripted = _compiled_layers()
        return cls(
            embed=embed,
            layers=layers,
            head=head,
            inv_freq=rotary.inv_freq.detach().float().clone(),
            rope_scale=float(getattr(rotary, "attention_scaling", 1.0)),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            head_dim=head_dim,
            intermediate=config.intermediate_size,
            eps=float(config.rms_norm_eps),
            n_layers=len(layers),
            scripted=scripted,
        )

    def new_cache(self, batch: int, length: int) -> KVCache:
        shape = (batch, self.n_kv_heads, length, self.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(self.n_layers)]

    def _freqs(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions[..., None].float() * self.inv_freq
        return torch.polar(torch.full_like(angles, self.rope_scale), angles).unsqueeze(2)

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        start: int,
        cache: KVCache,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, V] of the last position after feeding `ids` [B, T] at cache offset `start`.

        `key_mask` [B, >= start+T] marks real tokens (False: left padding); None means no padding.
        """
        batch, length = ids.shape
        end = start + length
        if end > cache[0][0].shape[2]:
            raise ValueError(f"the KV cache holds {cache[0][0].shape[2]} positions, {end} needed")
        mask = None
        if key_mask is not None and not bool(key_mask[:, :end].all()):
            allowed = torch.ones(length, end, dtype=torch.bool).tril(start)
            mask = allowed[None] & key_mask[:, None, :end].bool()
            # a padding position may attend to itself, so no row is all -inf (NaN); no real token attends to it
            rows = torch.arange(length)
            mask[:, rows, start + rows] = True
            mask = mask[:, None]
        elif length > 1 and start > 0:
            mask = torch.ones(length, end, dtype=torch.bool).tril(start)[None, None]
        fn, _ = _compiled_layers()
        x = F.embedding(ids, self.embed)
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            logits = fn(
                x,
                self._freqs(positions),
                start,
                self.layers,
                cache,
                mask,
                (self.n_heads, self.n_kv_heads, self.head_dim, self.intermediate),
                self.eps,
                self.head,
            )
        return logits[:, -1]


def build(model: Any) -> FastDecoder | None:
    """The lean decoder for `model`, or None when it cannot run it (then transformers decodes)."""
    if unsupported_reason(model) is not None:
        return None
    return FastDecoder.build(model)
