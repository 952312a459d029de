"""`python -m pipelines align dpo|rloo|eval`: improve the policy from preferences, and measure it."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.cli.common import (
    UsageError,
    add_capsule_flag,
    add_spec_flags,
    emit_json,
    keep_capsule,
    needs_action,
    quiet_stdout,
    spec_args,
    train_in_foreground,
)
from pipelines.engine import adapters, models
from pipelines.engine.sampling import SamplingParams
from pipelines.reasoning import grpo
from pipelines.train import reward
from pipelines.train.align import common, dpo, evaluate, rloo


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("align", help=help_text)
    commands = parser.add_subparsers(dest="align_command", metavar="ACTION", parser_class=type(parser))
    d = commands.add_parser("dpo", help="direct preference optimisation with LoRA (reference: the base model)")
    add_spec_flags(d, dpo.DPOSpec, one_of=[("data", "from_store")], at_most_one=[("epochs", "max_steps")])
    d.add_argument("--json", action="store_true")
    add_capsule_flag(d)
    d.set_defaults(handler=run_dpo)
    r = commands.add_parser("rloo", help="RL from a reward model with a KL penalty (REINFORCE leave-one-out)")
    add_spec_flags(r, rloo.RLOOSpec)
    r.add_argument("--json", action="store_true")
    add_capsule_flag(r)
    r.set_defaults(handler=run_rloo)
    g = commands.add_parser(
        "grpo", help="RL from verifiable rewards: rules check the answers to problems with known answers (GRPO)"
    )
    add_spec_flags(g, grpo.GRPOSpec)
    g.add_argument("--json", action="store_true")
    add_capsule_flag(g)
    g.set_defaults(handler=run_grpo)
    e = commands.add_parser("eval", help="win rate of an adapter against the base model, judged by a reward model")
    e.add_argument("--adapter", required=True, metavar="NAME")
    e.add_argument("--reward-model", required=True, metavar="NAME")
    e.add_argument("--prompts", required=True, metavar="FILE")
    e.add_argument("--max-new-tokens", type=int, default=128)
    e.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); above 0: sampled answers")
    e.add_argument("--samples", type=int, default=1, help="seeded samples per prompt when sampling")
    e.add_argument("--json", action="store_true")
    add_capsule_flag(e)
    e.set_defaults(handler=run_eval)
    parser.set_defaults(handler=needs_action("align", "dpo, rloo, grpo or eval"))


def _file(path: str, flag: str) -> str:
    if not Path(path).is_file():
        raise UsageError(f"{flag}: no such file {path!r}")
    return str(Path(path).resolve())


def _run(kind: str, spec, json_mode: bool, capsule: str | None = None) -> dict | None:
    """The job's result (None on the other ranks of a distributed run: rank 0 reports)."""
    job = train_in_foreground(kind, spec.out, spec.to_dict(), json_mode=json_mode, what=kind, capsule=capsule)
    return None if job is None else job.result | {"job_id": job.id}


def run_dpo(args: argparse.Namespace) -> int:
    spec = dpo.DPOSpec(
        **spec_args(args, dpo.DPOSpec, data=_file(args.data, "--data") if getattr(args, "data", None) else None)
    )
    common.check_new_adapter(spec.out, spec.overwrite)
    reward.load_pairs(spec)  # data problems are usage errors, reported before any model loads
    result = _run("dpo", spec, args.json, args.capsule)
    if result is None:
        return 0
    if args.json:
        emit_json(result)
    else:
        print(
            f"adapter saved to {result['adapter_dir']} after {result['steps']} steps; held-out implicit reward margin "
            f"{result.get('eval_margin_before') or 0:+.4f} -> {result.get('eval_margin_after') or 0:+.4f}"
        )
    return 0


def run_rloo(args: argparse.Namespace) -> int:
    spec = rloo.RLOOSpec(
        **spec_args(
            args, rloo.RLOOSpec, prompts=_file(args.prompts, "--prompts") if getattr(args, "prompts", None) else None
        )
    )
    rloo.check(spec)
    result = _run("rloo", spec, args.json, args.capsule)
    if result is None:
        return 0
    if args.json:
        emit_json(result)
    else:
        print(
            f"adapter saved to {result['adapter_dir']} after {result['steps']} steps; mean reward "
            f"{result['mean_reward_start']:+.4f} -> {result['mean_reward_end']:+.4f}"
        )
    return 0


def run_grpo(args: argparse.Namespace) -> int:
    files = {
        key: _file(getattr(args, key), flag)
        for key, flag in (("prompts", "--prompts"), ("reward_file", "--reward-file"))
        if getattr(args, key, None)
    }
    spec = grpo.GRPOSpec(**spec_args(args, grpo.GRPOSpec, **files))
    grpo.check(spec)  # the name, the problems and the reward file, before any model loads
    result = _run("grpo", spec, args.json, args.capsule)
    if result is None:
        return 0
    if args.json:
        emit_json(result)
    else:
        curves = ", ".join(
            f"{name} {values[0]:.2f} -> {values[-1]:.2f}" for name, values in result["rewards"].items() if values
        )
        print(
            f"adapter saved to {result['adapter_dir']} after {result['steps']} steps; mean rewards {curves}; held-out "
            f"accuracy {result['heldout_accuracy_before']:.1%} -> {result['heldout_accuracy_after']:.1%} "
            f"({result['heldout_problems']} problems)"
        )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    prompts = common.load_prompts(_file(args.prompts, "--prompts"))
    try:
        adapters.get(args.adapter)
        reward.meta(args.reward_model)
    except (adapters.AdapterError, reward.RewardModelError) as error:
        raise UsageError(
            f"{'--adapter' if isinstance(error, adapters.AdapterError) else '--reward-model'}: {error}"
        ) from error
    with quiet_stdout(args.json):
        report = evaluate.evaluate(
            models.get_handle(),
            args.adapter,
            args.reward_model,
            prompts,
            SamplingParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=0),
            samples=args.samples,
        )
    keep_capsule(args, report, reward_model=args.reward_model)
    if args.json:
        emit_json(report)
    else:
        print(
            f"{args.adapter} vs base on {report['n']} prompts, judged by {args.reward_model}: win rate {report['win_rate']:.1%} "
            f"({report['wins']} better, {report['ties']} ties within {report['tie_tolerance']:g}, {report['losses']} worse), "
            f"mean reward {report['mean_reward_adapter']:+.3f} vs {report['mean_reward_base']:+.3f}"
        )
    return 0
