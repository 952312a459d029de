"""`python -m pipelines finetune`: LoRA, prompt-tuning, full or selective SFT in the foreground.

The run is registered as a job, so the app's Fine-tune tab shows its progress and log too.
Under `accelerate launch` every rank trains; rank 0 records and prints the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.common import (
    UsageError,
    add_capsule_flag,
    add_spec_flags,
    emit_json,
    spec_args,
    train_in_foreground,
)
from pipelines.cli.common import (
    distributed_fields as _distributed,
)
from pipelines.train import finetune, sft_data


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    p = subparsers.add_parser("finetune", help=help_text)
    add_spec_flags(p, finetune.FinetuneSpec, at_most_one=[("epochs", "max_steps")])
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_capsule_flag(p)
    p.set_defaults(handler=run)


def spec_from_args(args: argparse.Namespace) -> finetune.FinetuneSpec:
    if not Path(args.data).is_file():
        raise UsageError(f"--data: no such file {args.data!r}")
    return finetune.FinetuneSpec(**spec_args(args, finetune.FinetuneSpec, data=str(Path(args.data).resolve())))


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    finetune.check_can_write(spec)
    data = sft_data.load_file(spec.data)  # bad data is a usage error, found before any model loads
    sft_data.accept(data, data.problems, skip_bad_rows=spec.skip_bad_rows)
    job = train_in_foreground(
        "finetune", spec.out, spec.to_dict(), json_mode=args.json, what="fine-tuning", capsule=args.capsule
    )
    if job is None:  # another rank of a distributed run: rank 0 reports
        return 0
    result = job.result
    kept = "model_dir" if spec.saves_model else "adapter_dir"  # a whole model, or an adapter beside the base
    if args.json:
        emit_json(
            {
                kept: result[kept],
                "method": spec.method,
                "trainable_params": result.get("trainable_params"),
                "size_mb": result.get("size_mb"),
                "train_loss": result["train_loss"],
                "eval_loss": result.get("eval_loss"),
                "steps": result["steps"],
                "seconds": result["seconds"],
                "job_id": job.id,
                "before": result.get("before"),
                "after": result.get("after"),
                **_distributed(result),
            }
        )
    else:
        what = "model" if spec.saves_model else "adapter"
        print(f"{what} saved to {result[kept]} ({result['steps']} steps, {result['seconds']:.0f} s)")
    return 0
