"""`python -m pipelines finetune`: LoRA / prompt-tuning SFT in the foreground.

The run is registered as a job, so the app's Fine-tune tab shows its progress and log too.
Under `accelerate launch` every rank trains; rank 0 records and prints the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import finetune, jobs, sft_data
from .common import CommandFailed, UsageError, emit_json, quiet_stdout


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    p = subparsers.add_parser("finetune", help=help_text)
    p.add_argument(
        "--data", required=True, metavar="FILE", help="JSONL, CSV or Parquet: prompt/response, Alpaca or messages"
    )
    p.add_argument("--out", required=True, metavar="NAME", help="adapter name, saved under <data>/adapters/NAME")
    p.add_argument("--method", choices=finetune.METHODS, default="lora")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None)
    length.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument(
        "--target-modules", nargs="+", default=None, metavar="NAME", help="layer types for LoRA (default: all linear)"
    )
    p.add_argument("--virtual-tokens", type=int, default=20, help="prompt tuning: number of learned tokens")
    p.add_argument("--lr", type=float, default=None, help="default 5e-4 (LoRA) or 3e-2 (prompt tuning)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eval-fraction", type=float, default=0.1)
    p.add_argument("--skip-bad-rows", action="store_true", help="train without rows that have problems")
    p.add_argument("--qlora", action="store_true", help="4-bit base model (needs CUDA + bitsandbytes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing adapter of the same name")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(handler=run)


def spec_from_args(args: argparse.Namespace) -> finetune.FinetuneSpec:
    if not Path(args.data).is_file():
        raise UsageError(f"--data: no such file {args.data!r}")
    return finetune.FinetuneSpec(
        data=str(Path(args.data).resolve()),
        out=args.out,
        method=args.method,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.target_modules or list(finetune.DEFAULT_TARGETS),
        num_virtual_tokens=args.virtual_tokens,
        learning_rate=args.lr,
        epochs=args.epochs if args.epochs is not None else 3.0,
        max_steps=args.max_steps if args.max_steps is not None else -1,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
        eval_fraction=args.eval_fraction,
        skip_bad_rows=args.skip_bad_rows,
        qlora=args.qlora,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    finetune.check_can_write(spec)
    data = sft_data.load_file(spec.data)  # bad data is a usage error, found before any model loads
    sft_data.accept(data, data.problems, skip_bad_rows=spec.skip_bad_rows)
    with quiet_stdout(args.json):
        job = jobs.run_foreground("finetune", spec.out, spec.to_dict(), echo=True)
    if job.status != jobs.SUCCEEDED:
        raise CommandFailed(f"fine-tuning {job.status}: {job.message} (log: {jobs.log_path(job.id)})")
    result = job.result
    if args.json:
        emit_json(
            {
                "adapter_dir": result["adapter_dir"],
                "train_loss": result["train_loss"],
                "eval_loss": result.get("eval_loss"),
                "steps": result["steps"],
                "seconds": result["seconds"],
                "job_id": job.id,
                "before": result.get("before"),
                "after": result.get("after"),
            }
        )
    else:
        print(f"adapter saved to {result['adapter_dir']} ({result['steps']} steps, {result['seconds']:.0f} s)")
    return 0
