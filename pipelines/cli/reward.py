"""`python -m pipelines reward train|eval|score`: reward models from preference pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.common import (
    UsageError,
    add_capsule_flag,
    add_spec_flags,
    distributed_fields,
    emit_json,
    keep_capsule,
    needs_action,
    quiet_stdout,
    spec_args,
    train_in_foreground,
)
from pipelines.train import reward


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("reward", help=help_text)
    commands = parser.add_subparsers(dest="reward_command", metavar="ACTION", parser_class=type(parser))
    train = commands.add_parser("train", help="train a reward model (Bradley-Terry loss) with LoRA")
    add_spec_flags(train, reward.RewardSpec, one_of=[("data", "from_store")], at_most_one=[("epochs", "max_steps")])
    train.add_argument("--json", action="store_true")
    add_capsule_flag(train)
    train.set_defaults(handler=run_train)
    evaluate = commands.add_parser("eval", help="pairwise accuracy of a reward model on a file")
    evaluate.add_argument("--model", required=True, metavar="NAME")
    evaluate.add_argument("--data", required=True, metavar="FILE")
    evaluate.add_argument("--json", action="store_true")
    add_capsule_flag(evaluate)
    evaluate.set_defaults(handler=run_eval)
    score = commands.add_parser("score", help="the reward of one response to one prompt")
    score.add_argument("--model", required=True, metavar="NAME")
    score.add_argument("--prompt", required=True)
    score.add_argument("--response", required=True)
    score.add_argument("--json", action="store_true")
    add_capsule_flag(score)
    score.set_defaults(handler=run_score)
    parser.set_defaults(handler=needs_action("reward", "train, eval or score"))


def _resolved(args: argparse.Namespace) -> str | None:
    """The pairs file as an absolute path (the job runs elsewhere), or None for --from-store."""
    data = getattr(args, "data", None)
    if data is None:
        return None
    if not Path(data).is_file():
        raise UsageError(f"--data: no such file {data!r}")
    return str(Path(data).resolve())


def run_train(args: argparse.Namespace) -> int:
    spec = reward.RewardSpec(**spec_args(args, reward.RewardSpec, data=_resolved(args)))
    if reward.model_path(spec.out).exists() and not spec.overwrite:
        raise UsageError(f"a reward model named {spec.out!r} already exists (use --overwrite)")
    reward.load_pairs(spec)  # data problems are usage errors, reported before any model loads
    job = train_in_foreground(
        "reward", spec.out, spec.to_dict(), json_mode=args.json, what="reward training", capsule=args.capsule
    )
    if job is None:  # another rank of a distributed run: rank 0 reports
        return 0
    result = job.result
    if args.json:
        emit_json(
            {
                "model_dir": result["model_dir"],
                "eval_accuracy": result["eval_accuracy"],
                "steps": result["steps"],
                "job_id": job.id,
                "eval_margin": result.get("eval_margin"),
                "seconds": result.get("seconds"),
                **distributed_fields(result),
            }
        )
    else:
        accuracy = result["eval_accuracy"]
        shown = f"{accuracy:.1%}" if accuracy is not None else "n/a (no held-out pairs)"
        print(f"reward model saved to {result['model_dir']}; held-out accuracy {shown}")
    return 0


def _existing(name: str) -> None:
    try:
        reward.meta(name)
    except reward.RewardModelError as error:
        raise UsageError(str(error)) from error


def run_eval(args: argparse.Namespace) -> int:
    _existing(args.model)
    if not Path(args.data).exists():
        raise UsageError(f"--data: no such file {args.data!r}")
    with quiet_stdout(args.json):
        result = reward.evaluate_file(args.model, args.data)
    keep_capsule(args, result, reward_model=args.model)
    if args.json:
        emit_json(result)
    else:
        print(f"accuracy {result['accuracy']:.1%} on {result['n']} pairs (mean margin {result['mean_margin']:+.3f})")
    return 0


def run_score(args: argparse.Namespace) -> int:
    _existing(args.model)
    if not args.prompt.strip() or not args.response.strip():
        raise UsageError("--prompt and --response must not be empty")
    with quiet_stdout(args.json):
        value = reward.score(args.model, args.prompt, args.response)
    keep_capsule(args, {"reward": value}, reward_model=args.model)
    if args.json:
        emit_json({"reward": value})
    else:
        print(f"{value:+.4f}")
    return 0
