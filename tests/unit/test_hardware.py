"""Device/precision rules, including the GPU ones this CPU-only CI cannot run for real."""

from __future__ import annotations

import pytest
import torch

from pipelines.engine.hardware import Hardware, plan_device, train_precision

AVX2_CPU = Hardware(cpu_flags=frozenset({"avx", "avx2"}), cpu_count=2)
AMX_CPU = Hardware(cpu_flags=frozenset({"avx512f", "avx512_bf16", "amx_bf16"}), cpu_count=64)
H100 = Hardware(cuda=True, cuda_bf16=True, cuda_name="NVIDIA H100", cpu_count=16)
T4 = Hardware(cuda=True, cuda_bf16=False, cuda_name="Tesla T4", cpu_count=4)


def test_cpu_without_native_bf16_uses_fp32_and_all_cores():
    plan = plan_device(AVX2_CPU)
    assert (plan.device, plan.dtype, plan.threads) == ("cpu", torch.float32, 2)
    assert "no native bf16" in plan.reason
    assert train_precision(AVX2_CPU, "cpu").bf16 is False


def test_cpu_with_native_bf16_may_train_in_bf16_but_threads_are_capped():
    assert train_precision(AMX_CPU, "cpu").bf16 is True
    assert plan_device(AMX_CPU).threads == 16


def test_gpu_precision_follows_bf16_support():
    assert plan_device(H100).dtype == torch.bfloat16 and plan_device(H100).device == "cuda"
    assert plan_device(T4).dtype == torch.float16
    assert train_precision(H100, "cuda").bf16 and not train_precision(H100, "cuda").fp16
    assert train_precision(T4, "cuda").fp16 and not train_precision(T4, "cuda").bf16
    assert plan_device(H100).attn_implementation == "sdpa"


def test_explicit_choices_win_and_impossible_ones_are_refused():
    assert plan_device(H100, "cpu").device == "cpu"
    assert plan_device(AVX2_CPU, "cpu", "bfloat16").dtype == torch.bfloat16
    assert plan_device(AVX2_CPU, threads=1).threads == 1
    with pytest.raises(ValueError, match="CUDA"):
        plan_device(AVX2_CPU, "cuda")


def test_settings_validate_environment(monkeypatch):
    from pipelines.config import Settings

    monkeypatch.setenv("PLAYGROUND_DEVICE", "tpu")
    with pytest.raises(ValueError, match="PLAYGROUND_DEVICE"):
        Settings()
    monkeypatch.setenv("PLAYGROUND_DEVICE", "auto")
    monkeypatch.setenv("PLAYGROUND_THREADS", "0")
    with pytest.raises(ValueError, match="PLAYGROUND_THREADS"):
        Settings()


def test_host_defaults_to_loopback(monkeypatch):
    from pipelines.config import Settings

    monkeypatch.delenv("PLAYGROUND_HOST", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    assert Settings().host == "127.0.0.1"
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what Spaces sets
    assert Settings().host == "0.0.0.0"


def test_fast_decode_only_where_it_applies():
    x86 = Hardware(
        cpu_flags=frozenset({"avx2"}), cpu_count=2, int8_engines=frozenset({"x86", "fbgemm", "qnnpack"}), arch="x86_64"
    )
    arm = Hardware(cpu_count=4, int8_engines=frozenset({"qnnpack"}), arch="aarch64")
    old = Hardware(
        cpu_flags=frozenset({"sse4_2"}), cpu_count=2, int8_engines=frozenset({"x86", "fbgemm"}), arch="x86_64"
    )
    gpu = Hardware(cuda=True, cuda_bf16=True, int8_engines=x86.int8_engines, cpu_flags=x86.cpu_flags, arch="x86_64")
    assert plan_device(x86, fast=True).fast_decode and "fp16" in plan_device(x86, fast=True).reason
    assert not plan_device(x86, fast=False).fast_decode  # PLAYGROUND_FAST=0
    assert not plan_device(arm, fast=True).fast_decode  # fbgemm's fp16 GEMM is x86-only
    assert not plan_device(old, fast=True).fast_decode  # no AVX2: no fbgemm kernels
    assert not plan_device(gpu, fast=True).fast_decode and plan_device(gpu, fast=True).attn_implementation == "sdpa"
    assert not plan_device(x86, requested_dtype="float32", fast=True).fast_decode  # an explicit dtype is respected


def test_fast_path_is_on_by_default_and_can_be_turned_off(monkeypatch):
    from pipelines.config import Settings

    assert Settings().fast
    monkeypatch.setenv("PLAYGROUND_FAST", "0")
    assert not Settings().fast
