"""`python -m pipelines scale`: what a model of a given size costs to train and needs in memory
(pipelines/train/scale.py).

The JSON is a contract: {"chinchilla_tokens", "train_flops", "gpu_hours", "tco2", "memory_gb":
{"inference": {...}, "full", "lora", "qlora"}, "per_gpu_gb": {"ddp", "zero1", "zero2", "zero3"}}
(and the model's shape, the GPU, days, energy, what fits, the formulas).
"""

from __future__ import annotations

import argparse

from pipelines.cli.common import add_capsule_flag, add_spec_flags, emit_json, keep_capsule, spec_args


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    from pipelines.train.scale import ScaleSpec

    parser = subparsers.add_parser("scale", help=help_text)
    add_spec_flags(parser, ScaleSpec)
    parser.add_argument("--json", action="store_true")
    add_capsule_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.train import scale

    report = scale.calculate(scale.ScaleSpec(**spec_args(args, scale.ScaleSpec)))
    keep_capsule(args, report, model=False)  # arithmetic on a model's shape, not its weights
    if args.json:
        emit_json(report)
        return 0
    model, memory, gpu = report["model"], report["memory_gb"], report["gpu"]
    print(f"{model['params']:.3g} parameters: {model['described']}")
    print(
        f"  tokens {report['tokens']:.3g} ({report['tokens_per_param']:.0f} per parameter; "
        f"Chinchilla-optimal {report['chinchilla_tokens']:.3g})"
    )
    print(f"  training compute 6·N·D = {report['train_flops']:.3g} FLOPs")
    print(
        f"  {report['gpu_hours']:,.0f} {gpu['name']} GPU-hours ({report['days']:,.1f} days on {gpu['count']} GPUs), "
        f"{report['energy_kwh']:,.0f} kWh, {report['tco2']:,.2f} tCO2e"
    )
    inference = ", ".join(f"{k} {v:,.1f}" for k, v in memory["inference"].items())
    print(f"  inference weights (GB): {inference}; KV cache {memory['kv_cache']:,.2f}")
    print(f"  fine-tuning (GB): full {memory['full']:,.1f}, LoRA {memory['lora']:,.1f}, QLoRA {memory['qlora']:,.1f}")
    shards = ", ".join(
        f"{k} {v:,.1f}{'' if report['fits'][k] else ' (does not fit)'}" for k, v in report["per_gpu_gb"].items()
    )
    print(f"  full fine-tuning per GPU (GB, {gpu['memory_gb']:.0f} GB each): {shards}")
    return 0
