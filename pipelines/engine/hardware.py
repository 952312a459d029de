"""Device, precision and thread choices derived from the machine.

Kept as pure functions of a `Hardware` description so the rules (which a GPU machine would take) are
unit-tested on a CPU-only CI box. The rule that matters most here: bf16 autocast on a CPU without
native bf16 (no AVX-512-BF16 / AMX) is ~40x slower, so CPUs compute in fp32 unless they have it.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from pipelines.errors import ConfigError


@dataclass(frozen=True)
class Hardware:
    cuda: bool = False
    cuda_bf16: bool = False
    cuda_name: str = ""
    mps: bool = False
    cpu_flags: frozenset[str] = frozenset()
    cpu_count: int = 1
    int8_engines: frozenset[str] = frozenset()  # torch's quantized CPU kernels available here
    arch: str = ""

    @property
    def cpu_native_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.cpu_flags)


@dataclass(frozen=True)
class DevicePlan:
    device: str
    dtype: torch.dtype
    threads: int
    attn_implementation: str
    reason: str
    fast_decode: bool = False  # base-model decoding through the lean fp16 decoder (pipelines/engine/fast_decode.py)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


@dataclass(frozen=True)
class TrainPrecision:
    """What a trainer config should set; never bf16 on a CPU that emulates it."""

    bf16: bool
    fp16: bool
    reason: str


def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def detect() -> Hardware:
    cuda = torch.cuda.is_available()
    return Hardware(
        cuda=cuda,
        cuda_bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        cuda_name=torch.cuda.get_device_name(0) if cuda else "",
        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        cpu_flags=_cpu_flags(),
        cpu_count=_usable_cpus(),
        int8_engines=frozenset(torch.backends.quantized.supported_engines) - {"none"},
        arch=platform.machine().lower(),
    )


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def fp16_gemm_available(hw: Hardware) -> bool:
    """fbgemm's fp16-weight GEMM: x86-64 with AVX2 (F16C) and a torch built with fbgemm."""
    return hw.arch in {"x86_64", "amd64"} and "avx2" in hw.cpu_flags and "fbgemm" in hw.int8_engines


def plan_device(
    hw: Hardware,
    requested_device: str = "auto",
    requested_dtype: str = "auto",
    threads: int | None = None,
    fast: bool = False,
) -> DevicePlan:
    """Pick device, inference dtype, thread count, attention kernel and the CPU fast decode path for `hw`.

    On a CPU, decoding one token of a small model reads every weight once and dispatches a few
    thousand tiny ops, so fp16 weights (half the bytes) in one TorchScript loop decode ~3x faster
    than transformers in fp32 at near-fp32 logits (pipelines/engine/fast_decode.py). GPUs decode in
    bf16/fp16 with SDPA attention instead.
    """
    if requested_device == "auto":
        device = "cuda" if hw.cuda else "mps" if hw.mps else "cpu"
    else:
        device = requested_device
        if device == "cuda" and not hw.cuda:
            raise ConfigError("PLAYGROUND_DEVICE=cuda but no CUDA device is available")
        if device == "mps" and not hw.mps:
            raise ConfigError("PLAYGROUND_DEVICE=mps but no Apple GPU is available")

    if requested_dtype != "auto":
        dtype, reason = _DTYPES[requested_dtype], f"{requested_dtype} as configured"
    elif device == "cuda":
        dtype = torch.bfloat16 if hw.cuda_bf16 else torch.float16
        reason = "bf16 on a GPU that supports it" if hw.cuda_bf16 else "fp16 on a GPU without bf16"
    elif device == "mps":
        dtype, reason = torch.float16, "fp16 on Apple GPU"
    else:
        dtype, reason = (
            torch.float32,
            (
                "fp32 on CPU (native bf16 present, but fp32 matmuls are exact and fast enough for small models)"
                if hw.cpu_native_bf16
                else "fp32 on CPU: this CPU has no native bf16, emulating it is many times slower"
            ),
        )
    # Leave nothing idle on small machines, but do not oversubscribe big ones: intra-op scaling
    # for a small model flattens out well before 16 threads.
    n_threads = threads or max(1, min(hw.cpu_count, 16))
    attn = "sdpa"
    lean = bool(
        fast and device == "cpu" and dtype == torch.float32 and requested_dtype == "auto" and fp16_gemm_available(hw)
    )
    if lean:
        reason += "; base-model decoding through fp16 weights in a TorchScript loop (PLAYGROUND_FAST=0 turns it off)"
    return DevicePlan(
        device=device, dtype=dtype, threads=n_threads, attn_implementation=attn, reason=reason, fast_decode=lean
    )


def train_precision(hw: Hardware, device: str, requested: str = "auto") -> TrainPrecision:
    """Mixed-precision flags for trl/transformers trainers on this hardware.

    `requested` (PLAYGROUND_TRAIN_PRECISION) forces a plan where the hardware can run it, so every
    plan can be exercised on any machine: a failure that only bf16 shows must not hide on a CPU
    without it.
    """
    if requested == "fp32":
        return TrainPrecision(bf16=False, fp16=False, reason="fp32 as configured (PLAYGROUND_TRAIN_PRECISION)")
    if requested == "bf16":
        if device == "cuda" and not hw.cuda_bf16:
            raise ConfigError("PLAYGROUND_TRAIN_PRECISION=bf16, but this GPU has no bf16: use fp16 or auto")
        native = device != "cpu" or hw.cpu_native_bf16
        return TrainPrecision(
            bf16=True,
            fp16=False,
            reason="bf16 mixed precision as configured (PLAYGROUND_TRAIN_PRECISION)"
            + ("" if native else "; this CPU emulates bf16, which is many times slower than fp32"),
        )
    if requested == "fp16":
        if device == "cpu":
            raise ConfigError("PLAYGROUND_TRAIN_PRECISION=fp16 needs a GPU: use bf16, fp32 or auto on a CPU")
        return TrainPrecision(
            bf16=False, fp16=True, reason="fp16 mixed precision as configured (PLAYGROUND_TRAIN_PRECISION)"
        )
    if device == "cuda":
        if hw.cuda_bf16:
            return TrainPrecision(bf16=True, fp16=False, reason="bf16 mixed precision on GPU")
        return TrainPrecision(bf16=False, fp16=True, reason="fp16 mixed precision on a GPU without bf16")
    if device == "cpu" and hw.cpu_native_bf16:
        return TrainPrecision(bf16=True, fp16=False, reason="bf16 autocast: this CPU has native bf16")
    return TrainPrecision(
        bf16=False, fp16=False, reason="fp32: no native bf16 here (bf16 autocast would be ~40x slower)"
    )


def apply_threads(plan: DevicePlan) -> None:
    if plan.device == "cpu" and torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)


@lru_cache(maxsize=1)
def _libc() -> Any:
    try:
        lib = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return lib if hasattr(lib, "malloc_trim") else None  # glibc only


def release_memory() -> None:
    """Give memory freed on the heap back to the operating system.

    glibc keeps freed heap pages for reuse: after a long prompt's prefill the app stayed +0.5 to
    +1.1 GB resident with nothing in use (a RAG question over long-string chunks, issue 35, L3),
    and a public Space pays for resident memory. Called when a generation ends; costs milliseconds.
    """
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
