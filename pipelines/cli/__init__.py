"""Command-line entry point: `python -m pipelines <command> ...`.

Each command lives in its own module with a `register(subparsers)` function. With `--json`,
a command prints exactly one JSON document on stdout; logs and progress go to stderr.
"""

from __future__ import annotations

from typing import Sequence

from . import align, chat, finetune, generate, prefs, rag, reason, reward, sandbox
from .common import OneLineParser, UsageError, configure_logging, run_guarded

COMMANDS = (generate, chat, finetune, prefs, reward, align, rag, reason, sandbox)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m pipelines", description="LLM Playground pipelines, headless")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def run() -> int:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            raise UsageError("a command is required; see `python -m pipelines --help`")
        configure_logging(args.verbose)
        return args.handler(args)

    return run_guarded(run)
