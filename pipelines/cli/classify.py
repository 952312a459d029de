"""`python -m pipelines classify train|predict`: a classification head on the base model."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.common import (
    UsageError,
    add_capsule_flag,
    add_spec_flags,
    emit_json,
    needs_action,
    quiet_stdout,
    spec_args,
    train_in_foreground,
)
from pipelines.train import classify


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("classify", help=help_text)
    commands = parser.add_subparsers(dest="classify_command", metavar="ACTION", parser_class=type(parser))
    train = commands.add_parser(
        "train", help="train a classifier: the head on frozen features (--mode head), LoRA + head, or every weight"
    )
    add_spec_flags(train, classify.ClassifySpec, at_most_one=[("epochs", "max_steps")])
    train.add_argument("--json", action="store_true")
    add_capsule_flag(train)
    train.set_defaults(handler=run_train)
    predict = commands.add_parser("predict", help="the label and its probabilities for one text (or pair)")
    predict.add_argument("--model", required=True, metavar="NAME")
    predict.add_argument("--text", required=True)
    predict.add_argument("--text-pair", default=None, help="the second sentence, for pair tasks (paraphrase)")
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=run_predict)
    parser.set_defaults(handler=needs_action("classify", "train or predict"))


def run_train(args: argparse.Namespace) -> int:
    if not Path(args.data).is_file():
        raise UsageError(f"--data: no such file {args.data!r}")
    spec = classify.ClassifySpec(**spec_args(args, classify.ClassifySpec, data=str(Path(args.data).resolve())))
    if classify.classifier_path(spec.out).exists() and not spec.overwrite:
        raise UsageError(f"--out: a classifier named {spec.out!r} already exists (use --overwrite)")
    classify.check_examples(classify.read_examples(spec.data), spec.skip_bad_rows)  # before any model loads
    job = train_in_foreground(
        "classify", spec.out, spec.to_dict(), json_mode=args.json, what="classifier training", capsule=args.capsule
    )
    if job is None:  # another rank of a distributed run: rank 0 reports
        return 0
    result = job.result
    if args.json:
        emit_json({**result, "job_id": job.id})
    else:
        before, after = result["eval_accuracy_before"], result["eval_accuracy"]
        shown = f"{before:.1%} -> {after:.1%}" if after is not None else "n/a (nothing held out)"
        print(f"classifier saved to {result['classifier_dir']}; held-out accuracy {shown}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    try:
        classify.meta(args.model)
    except classify.ClassifierError as error:
        raise UsageError(f"--model: {error}") from error
    if not args.text.strip():
        raise UsageError("--text must not be empty")
    with quiet_stdout(args.json):
        result = classify.predict(args.model, args.text, args.text_pair)
    if args.json:
        emit_json(result)
    else:
        shown = ", ".join(f"{label} {p:.1%}" for label, p in result["probabilities"].items())
        print(f"{result['label']} ({shown})")
    return 0
