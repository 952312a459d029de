"""The scale calculator (issue 38): the lectures' arithmetic on model sizes, reproducing the Llama 2
paper's figures, and memory from the same plan the Fine-tune tab uses."""

from __future__ import annotations

import json

import pytest

from pipelines.errors import InvalidParameter
from pipelines.train import finetune, memory_plan, scale

PUBLISHED = {  # parameter counts of the released checkpoints
    "135M": 134_515_008,
    "1B": 1_235_814_400,
    "7B": 6_738_415_616,
    "13B": 13_015_864_320,
    "70B": 68_976_648_192,
}


def test_the_presets_have_the_published_parameter_counts():
    assert {name: arch.shape().params for name, (_, arch) in scale.PRESETS.items()} == PUBLISHED


def test_llama_2_7b_reproduces_the_papers_gpu_hours_and_carbon():
    report = scale.calculate(scale.ScaleSpec(params="7B", tokens=2e12))
    assert report["train_flops"] == pytest.approx(6 * PUBLISHED["7B"] * 2e12)
    assert report["gpu_hours"] == pytest.approx(184_320, rel=0.05)  # Llama 2 paper, Table 2
    assert report["tco2"] == pytest.approx(31.22, rel=0.05)
    assert report["chinchilla_tokens"] == pytest.approx(20 * PUBLISHED["7B"])
    assert report["tokens_per_param"] == pytest.approx(2e12 / PUBLISHED["7B"])
    greener = scale.calculate(scale.ScaleSpec(params="7B", tokens=2e12, grid_kg_per_kwh=0.0423))
    assert greener["tco2"] == pytest.approx(report["tco2"] / 10)
    faster = scale.calculate(scale.ScaleSpec(params="7B", tokens=2e12, gpu="H100-80GB", gpus=16))
    assert faster["gpu_hours"] == pytest.approx(report["gpu_hours"] * 312 / 989)
    assert faster["days"] == pytest.approx(faster["gpu_hours"] / 16 / 24)


def test_memory_rows_follow_the_formulas_and_order():
    report = scale.calculate(scale.ScaleSpec(params="7B", gpus=8))
    n = PUBLISHED["7B"]
    assert report["memory_gb"]["inference"] == {
        name: round(n * size / 1e9, 3) for name, size in (("fp32", 4), ("fp16", 2), ("int8", 1), ("int4", 0.5))
    }
    memory, per_gpu = report["memory_gb"], report["per_gpu_gb"]
    assert memory["full"] > memory["lora"] > memory["qlora"] > memory["inference"]["int4"]
    assert memory["full"] > 16 * n / 1e9  # weights, gradients and AdamW's states at least
    assert per_gpu["ddp"] == memory["full"] > per_gpu["zero1"] > per_gpu["zero2"] > per_gpu["zero3"] == per_gpu["fsdp"]
    assert report["fits"] == {"ddp": False, "zero1": False, "zero2": True, "zero3": True, "fsdp": True}
    alone = scale.calculate(scale.ScaleSpec(params="7B", gpus=1))["per_gpu_gb"]
    assert len(set(alone.values())) == 1, "on one GPU nothing is sharded"


def test_sharding_divides_the_plans_own_terms():
    shape = scale.PRESETS["1B"][1].shape()
    plan = memory_plan.estimate(shape, "full", trainable=shape.params, step=memory_plan.Step(batch=1, length=512))
    k = 4
    assert plan.sharded(0, k) == plan.peak
    assert plan.sharded(3, k) == int(
        plan.weights / k + plan.optimizer / k + max(plan.activation_peak, 2 * plan.gradients / k)
    )
    assert plan.sharded(1, k) == int(plan.weights + plan.optimizer / k + max(plan.activation_peak, 2 * plan.gradients))


def test_any_size_is_a_llama_shaped_model_of_about_that_size():
    for wanted in (3e9, 350e6, 30e9):
        report = scale.calculate(scale.ScaleSpec(params=f"{wanted:g}"))
        assert report["model"]["params"] == wanted
        assert report["model"]["shape_params"] == pytest.approx(wanted, rel=0.1)
    assert (
        scale.parse_size("2.7B") == 2.7e9 and scale.parse_size("350M") == 350e6 and scale.parse_size("1_000_000") == 1e6
    )
    for bad in ("7x", "", "B", "0.5M", "20T"):
        with pytest.raises(InvalidParameter, match="params"):
            scale.ScaleSpec(params=bad)


def test_lora_trainable_from_the_shape_is_what_peft_adds(tiny_handle):
    model = tiny_handle.base_model
    shape = memory_plan.ModelShape.of(model)
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert scale.lora_trainable(shape, 8, targets) == finetune.lora_trainable(model, 8, targets)


def test_the_scale_command_keeps_its_json_contract(capsys):
    from pipelines.cli import main

    assert main(["scale", "--params", "7B", "--tokens", "2e12", "--gpu", "A100-80GB", "--gpus", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"chinchilla_tokens", "train_flops", "gpu_hours", "tco2", "memory_gb", "per_gpu_gb"}
    assert set(report["memory_gb"]) >= {"inference", "full", "lora", "qlora"}
    assert set(report["per_gpu_gb"]) >= {"ddp", "zero1", "zero2", "zero3"} and report["gpu"]["count"] == 64
    assert main(["scale", "--params", "7x"]) == 2
    assert main(["scale", "--gpu", "abacus"]) == 2
    assert main(["scale", "--params", "135M"]) == 0 and "SmolLM2-135M" in capsys.readouterr().out
