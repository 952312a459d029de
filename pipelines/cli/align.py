"""`python -m pipelines align dpo|rloo|eval`: improve the policy from preferences, and measure it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import adapters, jobs, models, reward
from ..align import common, dpo, evaluate, rloo
from ..sampling import SamplingParams
from .common import CommandFailed, UsageError, emit_json, needs_action, quiet_stdout


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("align", help=help_text)
    commands = parser.add_subparsers(dest="align_command", metavar="ACTION", parser_class=type(parser))
    d = commands.add_parser("dpo", help="direct preference optimisation with LoRA (reference: the base model)")
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="FILE", help="preference pairs in trl's format")
    source.add_argument("--from-store", action="store_true", help="the labels collected in the app")
    d.add_argument("--out", required=True, metavar="NAME")
    d.add_argument("--beta", type=float, default=dpo.DPOSpec.beta, help="strength of the pull toward the reference")
    d.add_argument("--loss-type", choices=dpo.LOSS_TYPES, default="sigmoid")
    length = d.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None)
    length.add_argument("--max-steps", type=int, default=None)
    d.add_argument("--lr", type=float, default=dpo.DPOSpec.learning_rate)
    d.add_argument("--batch-size", type=int, default=8)
    d.add_argument("--max-length", type=int, default=512)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--skip-bad-rows", action="store_true")
    d.add_argument("--overwrite", action="store_true")
    d.add_argument("--json", action="store_true")
    d.set_defaults(handler=run_dpo)
    r = commands.add_parser("rloo", help="RL from a reward model with a KL penalty (REINFORCE leave-one-out)")
    r.add_argument("--prompts", required=True, metavar="FILE", help="a 'prompt' column: text or messages")
    r.add_argument("--reward-model", required=True, metavar="NAME")
    r.add_argument("--out", required=True, metavar="NAME")
    r.add_argument("--beta", type=float, default=rloo.RLOOSpec.beta, help="KL coefficient")
    r.add_argument("--max-steps", type=int, default=rloo.RLOOSpec.max_steps)
    r.add_argument("--lr", type=float, default=rloo.RLOOSpec.learning_rate)
    r.add_argument("--num-generations", type=int, default=rloo.RLOOSpec.num_generations)
    r.add_argument("--prompts-per-step", type=int, default=rloo.RLOOSpec.prompts_per_step)
    r.add_argument("--max-completion-length", type=int, default=rloo.RLOOSpec.max_completion_length)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--overwrite", action="store_true")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=run_rloo)
    e = commands.add_parser("eval", help="win rate of an adapter against the base model, judged by a reward model")
    e.add_argument("--adapter", required=True, metavar="NAME")
    e.add_argument("--reward-model", required=True, metavar="NAME")
    e.add_argument("--prompts", required=True, metavar="FILE")
    e.add_argument("--max-new-tokens", type=int, default=128)
    e.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); above 0: sampled answers")
    e.add_argument("--samples", type=int, default=1, help="seeded samples per prompt when sampling")
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=run_eval)
    parser.set_defaults(handler=needs_action("align", "dpo, rloo or eval"))


def _file(path: str, flag: str) -> str:
    if not Path(path).is_file():
        raise UsageError(f"{flag}: no such file {path!r}")
    return str(Path(path).resolve())


def _run(kind: str, spec, json_mode: bool) -> dict:
    with quiet_stdout(json_mode):
        job = jobs.run_foreground(kind, spec.out, spec.to_dict(), echo=True)
    if job.status != jobs.SUCCEEDED:
        raise CommandFailed(f"{kind} {job.status}: {job.message} (log: {jobs.log_path(job.id)})")
    return job.result | {"job_id": job.id}


def run_dpo(args: argparse.Namespace) -> int:
    spec = dpo.DPOSpec(
        out=args.out,
        data=_file(args.data, "--data") if args.data else None,
        from_store=args.from_store,
        beta=args.beta,
        loss_type=args.loss_type,
        epochs=args.epochs if args.epochs is not None else dpo.DPOSpec.epochs,
        max_steps=args.max_steps if args.max_steps is not None else -1,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        skip_bad_rows=args.skip_bad_rows,
        overwrite=args.overwrite,
    )
    common.check_new_adapter(spec.out, spec.overwrite)
    reward.load_pairs(spec)  # data problems are usage errors, reported before any model loads
    result = _run("dpo", spec, args.json)
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
        out=args.out,
        reward_model=args.reward_model,
        prompts=_file(args.prompts, "--prompts"),
        beta=args.beta,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        num_generations=args.num_generations,
        prompts_per_step=args.prompts_per_step,
        max_completion_length=args.max_completion_length,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    rloo.check(spec)
    result = _run("rloo", spec, args.json)
    if args.json:
        emit_json(result)
    else:
        print(
            f"adapter saved to {result['adapter_dir']} after {result['steps']} steps; mean reward "
            f"{result['mean_reward_start']:+.4f} -> {result['mean_reward_end']:+.4f}"
        )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    prompts = common.load_prompts(_file(args.prompts, "--prompts"))
    try:
        if not adapters.adapter_path(args.adapter).is_dir():
            raise UsageError(f"--adapter: no adapter named {args.adapter!r} in {adapters.adapters_dir()}")
        reward.meta(args.reward_model)
    except (adapters.AdapterError, reward.RewardModelError) as error:
        raise UsageError(str(error)) from error
    with quiet_stdout(args.json):
        report = evaluate.evaluate(
            models.get_handle(),
            args.adapter,
            args.reward_model,
            prompts,
            SamplingParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=0),
            samples=args.samples,
        )
    if args.json:
        emit_json(report)
    else:
        print(
            f"{args.adapter} vs base on {report['n']} prompts, judged by {args.reward_model}: win rate {report['win_rate']:.1%} "
            f"({report['wins']} better, {report['ties']} ties within {report['tie_tolerance']:g}, {report['losses']} worse), "
            f"mean reward {report['mean_reward_adapter']:+.3f} vs {report['mean_reward_base']:+.3f}"
        )
    return 0
