"""`python -m pipelines reason run|extract|bench`: prompting strategies, headless."""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
from dataclasses import replace
from pathlib import Path

from pipelines.cli.common import (
    CommandFailed,
    UsageError,
    add_capsule_flag,
    add_sampling_flags,
    add_spec_flags,
    emit_json,
    keep_capsule,
    needs_action,
    quiet_stdout,
    sampling_from_args,
)
from pipelines.engine import models
from pipelines.engine.sampling import InvalidParameter
from pipelines.reasoning import benchmark, extract, solve, strategies


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("reason", help=help_text)
    commands = parser.add_subparsers(dest="reason_command", metavar="ACTION", parser_class=type(parser))
    run = commands.add_parser("run", help="answer one question with each strategy")
    run.add_argument("--question", required=True)
    _strategy_flags(run)
    run.add_argument("--json", action="store_true")
    add_capsule_flag(run)
    run.set_defaults(handler=run_run)
    ex = commands.add_parser("extract", help="the numeric answer a text states")
    ex.add_argument("--text", required=True)
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(handler=run_extract)
    bench = commands.add_parser("bench", help="accuracy of each strategy over a problem set (saved as a run)")
    bench.add_argument(
        "--data", metavar="FILE", help='JSONL of {"question", "answer"} (default: the bundled 48 problems)'
    )
    _strategy_flags(bench)
    bench.add_argument("--limit", type=int, help="only the first N problems")
    bench.add_argument("--json", action="store_true")
    add_capsule_flag(bench)
    bench.set_defaults(handler=run_bench)
    parser.set_defaults(handler=needs_action("reason", "run, extract or bench"))


def _strategy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategies", default=",".join(strategies.KEYS), help="comma-separated: direct,cot,pal")
    add_spec_flags(parser, solve.SampleSpec)
    parser.add_argument("--adapter", help="an adapter from data/adapters/")
    add_sampling_flags(parser)
    # greedy for one sample; sampled (0.7) for self-consistency, unless given
    parser.set_defaults(temperature=None, max_new_tokens=None, samples=solve.SampleSpec().samples)


def _setup(args: argparse.Namespace):
    try:
        keys = strategies.parse_keys(args.strategies)
        chosen = strategies.load_all(keys)
    except strategies.StrategyError as error:
        raise UsageError(f"--strategies: {error}") from error
    if args.temperature is None:
        args.temperature = 0.0 if args.samples <= 1 else 0.7
    cap = args.max_new_tokens
    args.max_new_tokens = 1
    params = sampling_from_args(args)
    if cap is not None and not 1 <= cap <= strategies.MAX_BUDGET:
        raise InvalidParameter("max_new_tokens", f"must be between 1 and {strategies.MAX_BUDGET}, got {cap}")
    return chosen, replace(params, max_new_tokens=cap or 1), cap


def run_run(args: argparse.Namespace) -> int:
    chosen, params, cap = _setup(args)
    solve.check_inputs(args.question, args.samples, params)  # refusals exit 2 naming the parameter
    if args.capsule and params.seed is None and not params.greedy:
        params = params.with_seed(secrets.randbelow(2**31))  # sampled rows are replayable only from a seed
    with quiet_stdout(args.json):
        handle = models.get_handle()
        results = solve.solve(
            handle,
            args.question,
            chosen,
            params,
            samples=args.samples,
            adapter=args.adapter,
            token_cap=cap,
        )
    if args.capsule:
        from pipelines.replay import capsules, record

        document = record.reasoning(
            handle,
            args.question,
            chosen,
            params,
            results,
            samples=args.samples,
            token_cap=cap,
            adapter=args.adapter,
        )
        capsules.write(args.capsule, document)
    if args.json:
        emit_json({"results": [r.to_json() for r in results]})
    else:
        for r in results:
            print(f"== {r.name}: {extract.format_number(r.answer)}  ({r.mean_tokens:.0f} tokens, {r.seconds:.1f} s)")
            print(r.output.strip())
            if r.votes:
                print("votes:", ", ".join(f"{k} x{v}" for k, v in r.votes.items()))
            if r.samples[0].run and r.samples[0].run.get("error"):
                print("program error:", r.samples[0].run["error"])
    return 0


def run_extract(args: argparse.Namespace) -> int:
    value = extract.extract_answer(args.text)
    if args.json:
        emit_json({"answer": value})
    else:
        print(extract.format_number(value))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    chosen, params, cap = _setup(args)
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.data and not Path(args.data).is_file():
        raise UsageError(f"--data: no such file {args.data!r}")
    problems, errors = benchmark.load_problems(args.data)
    if not problems:
        raise UsageError("no usable problems" + (f": line {errors[0]['line']}: {errors[0]['error']}" if errors else ""))
    problems = problems[: args.limit] if args.limit else problems
    if args.samples > 1 and params.temperature == 0:
        raise UsageError("self-consistency needs a temperature above 0")

    seen: dict = {}

    def progress(done: int, total: int, record: dict) -> None:
        seen.update(record)
        summary = ", ".join(f"{k} {v['correct']}/{v['n']}" for k, v in record["summary"].items())
        print(f"[{done}/{total}] {summary}", file=sys.stderr, flush=True)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)  # a killed run still saves what it finished
    try:
        with quiet_stdout(args.json):
            record = benchmark.run(
                models.get_handle(),
                problems,
                chosen,
                params,
                samples=args.samples,
                adapter=args.adapter,
                token_cap=cap,
                data_name=Path(args.data).name if args.data else "problems.jsonl",
                progress=progress,
            )
    except KeyboardInterrupt:
        done = len(seen.get("items", []))
        raise CommandFailed(
            f"stopped after {done} problems" + (f"; the partial run was saved as {seen['id']}" if done else "")
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = record["summary"] | {"n": len(record["items"]), "run_id": record["id"], "errors": errors}
    keep_capsule(args, report)
    if args.json:
        emit_json(report)
    else:
        for key, row in record["summary"].items():
            print(
                f"{key:7s} accuracy {row['accuracy']:.3f} ({row['correct']}/{row['n']})  mean tokens {row['mean_tokens']:.0f}  "
                f"mean seconds {row['mean_seconds']:.2f}"
            )
        print(f"saved run {record['id']}")
    return 0
