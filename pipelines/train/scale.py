"""What a model of a given size costs to train and needs in memory: the lectures' scale arithmetic
(Chinchilla's ~20 tokens per parameter, training compute ≈ 6·N·D, the Llama 2 paper's GPU-hours
and tCO₂, the memory of inference, full fine-tuning, LoRA and QLoRA, and how DDP, ZeRO and FSDP
divide it between GPUs), each figure with the formula that made it.

Memory comes from the same tensor-by-tensor model the Fine-tune tab plans with
(`memory_plan.estimate`, checked against measured peaks by `bench/memory_bench.py`), applied to the
shapes of real models: the presets are the published configurations of SmolLM2-135M (the bundled
model), Llama 3.2 1B and Llama 2 7B / 13B / 70B, and any other size is a Llama-shaped model whose
width is scaled from the nearest preset. Compute and carbon follow the Llama 2 paper's accounting
(GPU-hours × the GPU's power × the grid's carbon intensity): at the defaults, 7B parameters on 2T
tokens on A100s comes out at ~180,000 GPU-hours and ~30.5 tCO₂, against the paper's 184,320 and 31.22.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from pipelines import knobs
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.train import memory_plan

GB = 1e9  # decimal gigabytes, as the lectures count (1B parameters x 4 bytes = 4 GB)
CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal data is ~20 tokens per parameter
FLOPS_PER_PARAM_TOKEN = 6  # forward 2·N·D + backward 4·N·D (Kaplan et al. 2020)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
INFERENCE_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class Architecture:
    """A Llama-style decoder's published configuration."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def shape(self) -> memory_plan.ModelShape:
        h, hd = self.hidden, self.head_dim
        attention = h * self.heads * hd * 2 + h * self.kv_heads * hd * 2  # q and o; k and v
        linear = self.layers * (attention + 3 * h * self.intermediate)
        embedding = self.vocab * h
        params = linear + embedding * (1 if self.tied else 2) + self.layers * 2 * h + h  # + RMSNorm weights
        return memory_plan.ModelShape(
            layers=self.layers,
            hidden=h,
            intermediate=self.intermediate,
            heads=self.heads,
            kv_heads=self.kv_heads,
            head_dim=hd,
            vocab=self.vocab,
            params=params,
            linear_params=linear,
            head_params=embedding,
        )


PRESETS: dict[str, tuple[str, Architecture]] = {
    "135M": ("SmolLM2-135M (the bundled model)", Architecture(30, 576, 1536, 9, 3, 49152, tied=True)),
    "1B": ("Llama 3.2 1B", Architecture(16, 2048, 8192, 32, 8, 128256, tied=True)),
    "7B": ("Llama 2 7B", Architecture(32, 4096, 11008, 32, 32, 32000, tied=False)),
    "13B": ("Llama 2 13B", Architecture(40, 5120, 13824, 40, 40, 32000, tied=False)),
    "70B": ("Llama 2 70B", Architecture(80, 8192, 28672, 64, 8, 32000, tied=False)),
}


@dataclass(frozen=True)
class GPU:
    """A GPU's memory, dense 16-bit tensor throughput and board power (vendor datasheets)."""

    memory_gb: float
    tflops: float  # dense bf16/fp16 tensor-core peak, no sparsity
    watts: float


GPUS: dict[str, GPU] = {
    "A100-80GB": GPU(80 * 2**30 / GB, 312, 400),  # the Llama 2 paper's GPU and power figure
    "A100-40GB": GPU(40 * 2**30 / GB, 312, 400),
    "H100-80GB": GPU(80 * 2**30 / GB, 989, 700),  # SXM
    "V100-32GB": GPU(32 * 2**30 / GB, 125, 300),  # fp16 only
    "L4": GPU(24 * 2**30 / GB, 121, 72),
    "T4": GPU(16 * 2**30 / GB, 65, 70),  # fp16 only: the free Colab GPU
    "RTX-4090": GPU(24 * 2**30 / GB, 165, 450),
}


@dataclass(frozen=True)
class ScaleSpec:
    """The calculator's inputs: the CLI's flags (`python -m pipelines scale`) and the panel's controls."""

    params: str = knob(
        "135M",
        help="model size: a preset (135M, 1B, 7B, 13B, 70B) or a number of parameters (3e9, 3B, 350M)",
        label="Model size",
        metavar="N",
    )
    tokens: float | None = knob(
        None,
        help="training tokens (default: Chinchilla's ~20 per parameter)",
        label="Training tokens",
        info="0 = Chinchilla's 20 per parameter",
        low=1e6,
        high=1e15,
        slider=False,
        ui_none=0,
    )
    gpu: str = knob("A100-80GB", help="the GPU type", label="GPU", choices=tuple(GPUS))
    gpus: int = knob(8, help="how many GPUs train together", label="GPUs", low=1, high=100_000, slider=False)
    utilisation: float = knob(
        0.4,
        help="model FLOPs utilisation: the share of the GPU's peak a run sustains (0.4 reproduces Llama 2's GPU-hours)",
        label="Utilisation (MFU)",
        low=0.01,
        high=1.0,
        step=0.01,
    )
    grid_kg_per_kwh: float = knob(
        0.423,
        help="the grid's carbon intensity, kg CO₂e per kWh (0.423 reproduces Llama 2's tCO₂; ~0.02 hydro, ~0.8 coal)",
        label="Grid intensity (kg CO₂e/kWh)",
        low=0.0,
        high=2.0,
        step=0.001,
    )
    pue: float = knob(
        1.0,
        help="data-centre power usage effectiveness (1.0: the GPUs' power only, as Llama 2 counts; ~1.1-1.5 real)",
        label="PUE",
        low=1.0,
        high=3.0,
        step=0.05,
    )
    batch: int = knob(
        1, help="sequences per GPU per step (activations grow with it)", label="Batch per GPU", low=1, high=1024
    )
    length: int = knob(2048, help="tokens per sequence", label="Sequence length", low=16, high=131072, slider=False)
    checkpointing: bool = knob(
        True,
        help="gradient checkpointing: each block keeps only its input and recomputes the rest",
        label="Checkpointing",
    )
    lora_r: int = knob(16, help="LoRA rank on q, k, v, o of every block", label="LoRA rank", low=1, high=1024)

    def __post_init__(self) -> None:
        knobs.check(self)
        if self.params.strip().upper() not in PRESETS:
            parse_size(self.params)  # refused here, naming the setting


def parse_size(text: str) -> float:
    """135M, 7B, 3e9 or 350000000 -> a number of parameters."""
    cleaned = str(text or "").strip().replace(",", "").replace("_", "")
    match = re.fullmatch(r"(\d+(?:\.\d+)?(?:[eE]\+?\d+)?)\s*([kKmMbBtT]?)", cleaned)
    if not match:
        raise InvalidParameter("params", f"a size such as 135M, 7B or 3e9, not {cleaned[:40]!r}")
    value = float(match[1]) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match[2].lower()]
    if not 1e6 <= value <= 1e13:
        raise InvalidParameter("params", "between 1M and 10T parameters")
    return value


def architecture(params: str) -> tuple[str, Architecture]:
    """The preset of that name, or a Llama-shaped model of about that many parameters: the nearest
    preset's depth and vocabulary, its width scaled (parameters grow with the width squared)."""
    if params.strip().upper() in PRESETS:
        return PRESETS[params.strip().upper()]
    wanted = parse_size(params)
    name, nearest = min(PRESETS.values(), key=lambda preset: abs(math.log(preset[1].shape().params / wanted)))
    factor = math.sqrt(wanted / nearest.shape().params)
    for _ in range(30):  # the embeddings grow linearly, the blocks quadratically: a few corrections
        heads = max(1, round(nearest.heads * factor))
        kv_heads = max(1, min(heads, round(nearest.kv_heads * factor)))
        while heads % kv_heads:
            kv_heads -= 1
        built = Architecture(
            nearest.layers,
            heads * nearest.head_dim,
            max(1, round(nearest.intermediate * factor)),
            heads,
            kv_heads,
            nearest.vocab,
            nearest.tied,
        )
        factor *= math.sqrt(wanted / built.shape().params) ** 0.9
    return f"a Llama-shaped model ({name}'s depth, width scaled)", built


def lora_trainable(shape: memory_plan.ModelShape, r: int, targets: tuple[str, ...] = LORA_TARGETS) -> int:
    """LoRA's A (r x in) and B (out x r) on each target of every block."""
    out = {
        "q_proj": shape.heads * shape.head_dim,
        "k_proj": shape.kv_heads * shape.head_dim,
        "v_proj": shape.kv_heads * shape.head_dim,
        "o_proj": shape.hidden,
        "gate_proj": shape.intermediate,
        "up_proj": shape.intermediate,
        "down_proj": shape.hidden,
    }
    return shape.layers * sum(r * (shape.in_features(t) + out[t]) for t in targets)


def _gb(value: float) -> float:
    return round(value / GB, 3)


def calculate(spec: ScaleSpec | None = None) -> dict[str, Any]:
    """Every figure of the calculator, with the formulas (the CLI's JSON contract, plus `formulas`)."""
    spec = spec or ScaleSpec()
    described, arch = architecture(spec.params)
    shape = arch.shape()
    n = float(shape.params) if spec.params.strip().upper() in PRESETS else parse_size(spec.params)
    chinchilla = CHINCHILLA_TOKENS_PER_PARAM * n
    tokens = float(spec.tokens) if spec.tokens else chinchilla
    gpu = GPUS[spec.gpu]
    flops = FLOPS_PER_PARAM_TOKEN * n * tokens
    gpu_hours = flops / (gpu.tflops * 1e12 * spec.utilisation) / 3600
    energy_kwh = gpu_hours * gpu.watts / 1000 * spec.pue
    step = memory_plan.Step(
        batch=spec.batch, length=spec.length, mixed_precision=True, checkpointing=spec.checkpointing
    )
    lora = lora_trainable(shape, spec.lora_r)
    lora_options: dict[str, Any] = {"lora_targets": LORA_TARGETS, "lora_r": spec.lora_r, "lora_dropout": 0.0}
    full = memory_plan.estimate(shape, "full", trainable=shape.params, step=step)
    adapted = memory_plan.estimate(shape, "lora", trainable=lora, step=step, base="16bit", **lora_options)
    quantised = memory_plan.estimate(shape, "lora", trainable=lora, step=step, base="nf4", **lora_options)
    kv_cache = 2 * shape.layers * shape.kv_heads * shape.head_dim * spec.length * spec.batch * 2
    per_gpu = {
        name: full.sharded(stage, spec.gpus) for name, stage in (("ddp", 0), ("zero1", 1), ("zero2", 2), ("zero3", 3))
    }
    per_gpu["fsdp"] = per_gpu["zero3"]  # FSDP's FULL_SHARD shards as ZeRO-3 does
    return {
        "model": {
            "params": n,
            "described": described,
            "layers": arch.layers,
            "hidden": arch.hidden,
            "intermediate": arch.intermediate,
            "heads": arch.heads,
            "kv_heads": arch.kv_heads,
            "vocab": arch.vocab,
            "shape_params": shape.params,
        },
        "gpu": {"name": spec.gpu, "count": spec.gpus, **asdict(gpu)},
        "tokens": tokens,
        "chinchilla_tokens": chinchilla,
        "tokens_per_param": tokens / n,
        "train_flops": flops,
        "gpu_hours": gpu_hours,
        "days": gpu_hours / spec.gpus / 24,
        "energy_kwh": energy_kwh,
        "tco2": energy_kwh * spec.grid_kg_per_kwh / 1000,
        "memory_gb": {
            "inference": {name: _gb(n * size) for name, size in INFERENCE_BYTES.items()},
            "kv_cache": _gb(kv_cache),
            "full": _gb(full.peak),
            "lora": _gb(adapted.peak),
            "qlora": _gb(quantised.peak),
        },
        "lora_trainable": lora,
        "per_gpu_gb": {name: _gb(value) for name, value in per_gpu.items()},
        "fits": {name: value <= gpu.memory_gb * GB for name, value in per_gpu.items()},
        "formulas": FORMULAS,
    }


FORMULAS = {
    "chinchilla_tokens": "D* = 20 · N (Hoffmann et al. 2022)",
    "train_flops": "C = 6 · N · D (2·N·D forward + 4·N·D backward)",
    "gpu_hours": "C / (peak FLOP/s × utilisation) / 3600",
    "tco2": "GPU-hours × GPU power (kW) × PUE × grid intensity (kg/kWh) / 1000",
    "inference": "N × bytes per weight (fp32 4, fp16 2, int8 1, int4 0.5); the KV cache comes on top: "
    "2 · layers · kv_heads · head_dim · length · batch · 2 bytes",
    "full": "fp32 weights 4·N + autocast's 16-bit copies + AdamW 8·N + gradients 4·N (or the activations "
    "when they are larger): the Fine-tune tab's memory plan",
    "lora": "16-bit frozen base 2·N + the adapters' weights, AdamW and gradients (16 bytes each) + activations",
    "qlora": "NF4 base (4.127 bits with double-quantised scales) + 16-bit norms and embeddings + adapters + activations",
    "per_gpu": "DDP: everything on every GPU; ZeRO-1 shards AdamW's states over the K GPUs, ZeRO-2 also "
    "the gradients, ZeRO-3 / FSDP also the weights (one layer is gathered at a time); activations stay per GPU",
}
