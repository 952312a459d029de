"""`python -m pipelines compress`: the same model in fewer bits, measured here
(pipelines/inside/compression.py).

The JSON is a contract: {"variants": [{"name", "size_mb", "tokens_per_second", "perplexity",
"greedy_agreement"}]} (each row also says how it was timed and what it wrote; tokens_per_second is
null where this machine cannot time the variant honestly, `timed_by` says why). With `--prune`,
"pruning": [{"sparsity", "zero_share", "perplexity", "greedy_agreement", "sample"}] too;
with `--adapters`, "adapters": [{"name", "trainable", "share", "tokens_per_second", "sample"}];
with `--student NAME`, "student": [{"name": "teacher" | "cut" | "distilled", "parameters", "size_mb",
"tokens_per_second", "perplexity", "greedy_agreement", "sample"}].
"""

from __future__ import annotations

import argparse
from typing import Any

from pipelines.cli.common import add_capsule_flag, add_spec_flags, emit_json, keep_capsule, quiet_stdout, spec_args


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    from pipelines.inside.compression import CompressSpec

    parser = subparsers.add_parser("compress", help=help_text)
    add_spec_flags(parser, CompressSpec)
    parser.add_argument(
        "--prune",
        nargs="+",
        type=float,
        default=None,
        metavar="X",
        help="also measure global magnitude pruning at these sparsities (e.g. 0 0.1 0.3 0.5)",
    )
    parser.add_argument(
        "--adapters",
        action="store_true",
        help="also time LoRA (unmerged, merged) and bottleneck adapters against the base model",
    )
    parser.add_argument(
        "--student",
        default=None,
        metavar="NAME",
        help="also compare a distilled student (`python -m pipelines distill`; bundled: distilled-student) with its teacher",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    add_capsule_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.engine import models
    from pipelines.inside import compression

    spec = compression.CompressSpec(**spec_args(args, compression.CompressSpec))
    pruning = None
    if args.prune is not None:  # checked before anything is loaded
        pruning = compression.PruneSpec(sparsities=args.prune, prompt=spec.prompt, text=spec.text)
    students = None
    if args.student is not None:
        from pipelines.train import distill

        students = compression.StudentSpec(
            student=args.student, prompt=spec.prompt, new_tokens=spec.new_tokens, text=spec.text
        )
        distill.find(students.student)  # an unknown student is refused before anything is measured
    with quiet_stdout(args.json):
        handle = models.get_handle()
        report: dict[str, Any] = compression.compress(handle, spec)
        if pruning is not None:
            report["pruning"] = compression.pruning(handle, pruning)["curve"]
        if args.adapters:
            costs = compression.AdapterCostSpec(prompt=spec.prompt, new_tokens=spec.new_tokens)
            report["adapters"] = compression.adapter_costs(handle, costs)
        if students is not None:
            report["student"] = compression.student_comparison(handle, students)
    keep_capsule(args, report)
    if args.json:
        emit_json(report)
        return 0
    print(f"{report['model']}: perplexity on {report['text_tokens']} tokens, {report['new_tokens']} tokens timed")
    print(f"  {'variant':<13} {'MB':>8} {'tok/s':>7} {'perplexity':>11} {'agreement':>10}")
    for row in report["variants"]:
        speed = "—" if row["tokens_per_second"] is None else f"{row['tokens_per_second']:.1f}"
        print(
            f"  {row['name']:<13} {row['size_mb']:>8.1f} {speed:>7} {row['perplexity']:>11.2f} "
            f"{row['greedy_agreement']:>10.1%}"
        )
    for row in report.get("adapters", []):
        print(f"  {row['name']}: trains {row['share']:.2%}, {row['tokens_per_second']:.1f} tokens/s")
    for row in report.get("student", []):
        print(
            f"  {row['name']}: {row['parameters'] / 1e6:.1f}M parameters, {row['tokens_per_second']:.1f} tokens/s, "
            f"perplexity {row['perplexity']:.2f}, agreement {row['greedy_agreement']:.1%}"
        )
    for row in report.get("pruning", []):
        print(
            f"  pruned {row['sparsity']:.0%}: perplexity {row['perplexity']:.2f}, agreement "
            f"{row['greedy_agreement']:.1%}"
        )
    return 0
