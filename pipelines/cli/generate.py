"""`python -m pipelines generate`: a completion, streamed to the terminal or as one JSON document."""

from __future__ import annotations

import argparse
import sys

from pipelines.cli.common import add_capsule_flag, add_sampling_flags, emit_json, quiet_stdout, sampling_from_args
from pipelines.engine import generation, models
from pipelines.engine.sampling import InvalidParameter


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("generate", help=help_text)
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--adapter", default=None, help="name of an adapter under <data>/adapters")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_capsule_flag(parser)
    add_sampling_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    params = sampling_from_args(args)  # validate before paying for a model load
    if not args.prompt.strip():
        raise InvalidParameter("prompt", "is empty")
    with quiet_stdout(args.json):
        handle = models.get_handle()
        if args.json:
            completion = generation.generate(handle, args.prompt, params, adapter=args.adapter)
        else:
            shown = 0
            completion = None
            for completion in generation.stream(handle, args.prompt, params, adapter=args.adapter):
                sys.stdout.write(completion.text[shown:])
                sys.stdout.flush()
                shown = len(completion.text)
            sys.stdout.write("\n")
    assert completion is not None
    if args.capsule:
        from pipelines.replay import capsules, record

        capsules.write(args.capsule, record.generation(handle, args.prompt, completion, adapter=args.adapter))
    if args.json:
        emit_json(completion.to_json())
    else:
        print(
            f"[{len(completion.tokens)} tokens, {completion.tokens_per_second:.1f} tokens/s, "
            f"finish: {completion.finish_reason}, seed: {completion.seed}]",
            file=sys.stderr,
        )
    return 0
