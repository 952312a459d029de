"""`python -m pipelines distill`: a smaller student distilled from the model (pipelines/train/distill.py).

With `--json`: {"student_dir", "steps", "layers", "teacher_parameters", "student_parameters",
"teacher_perplexity", "before": {...}, "after": {...}} where before/after are the cut student's
{"held_out_kl", "held_out_agreement", "general_perplexity"} without and with distillation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.common import UsageError, add_capsule_flag, add_spec_flags, emit_json, spec_args, train_in_foreground


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    from pipelines.train.distill import DistillSpec

    parser = subparsers.add_parser("distill", help=help_text)
    add_spec_flags(parser, DistillSpec, at_most_one=[("epochs", "max_steps")])
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_capsule_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.train import distill
    from pipelines.train.job import refuse_taken

    prompts = getattr(args, "prompts", None)
    if prompts and not Path(prompts).is_file():
        raise UsageError(f"--prompts: no such file {prompts!r}")
    spec = distill.DistillSpec(
        **spec_args(args, distill.DistillSpec, prompts=str(Path(prompts).resolve()) if prompts else None)
    )
    refuse_taken(distill.student_path(spec.out), "student", spec.out, spec.overwrite)
    distill.prompt_texts(spec.prompts)  # unreadable prompts are usage errors, before any model loads
    job = train_in_foreground(
        "distill", spec.out, spec.to_dict(), json_mode=args.json, what="distillation", capsule=args.capsule
    )
    if job is None:
        return 0
    result = job.result | {"job_id": job.id}
    if args.json:
        emit_json(result)
        return 0
    before, after = result["before"], result["after"]
    print(
        f"student saved to {result['student_dir']}: {len(result['layers'])} blocks, "
        f"{result['student_parameters'] / 1e6:.1f}M parameters (teacher {result['teacher_parameters'] / 1e6:.1f}M)\n"
        f"  same next token as the teacher on held-out answers: {before['held_out_agreement']:.1%} -> "
        f"{after['held_out_agreement']:.1%}; KL {before['held_out_kl']:.3f} -> {after['held_out_kl']:.3f} nats/token\n"
        f"  perplexity on general text: {before['general_perplexity']:.1f} -> {after['general_perplexity']:.1f} "
        f"(teacher {result['teacher_perplexity']:.1f})"
    )
    return 0
