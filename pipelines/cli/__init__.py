"""Command-line entry point: `python -m pipelines <command> ...`.

Each command lives in its own module with a `register(subparsers)` function. With `--json`,
a command prints exactly one JSON document on stdout; logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipelines.cli.common import OneLineParser, UsageError, configure_logging, run_guarded

# command -> what it does; each lives in the module of the same name (pipelines/cli/<command>.py)
COMMANDS = {
    "generate": "complete a prompt with the base model",
    "chat": "reply to a conversation (OpenAI-style messages JSON)",
    "finetune": "fine-tune an adapter on an instruction dataset",
    "prefs": "import or export human preference labels",
    "reward": "train, evaluate or query a reward model",
    "classify": "a classification head on the base model (sentiment, paraphrase): feature-based or fine-tuned",
    "align": "DPO or RLOO on the base model, and reward-model-judged evaluation",
    "rag": "ingest documents, ask questions with citations, measure retrieval",
    "reason": "direct vs chain-of-thought vs program-aided answers, and their accuracy",
    "sandbox": "run untrusted Python in the sandbox",
    "bundled": "the ready-made adapters and reward model shipped with the project, and their figures",
    "inspect": "inside the model: tokens, likelihood, attention, logit and tuned lens, architecture, heads, patching, steering",
    "db": "the database's schema revision: status, or upgrade now (every process upgrades on open anyway)",
    "workshop": "run a class: a join code, students' progress through the lessons, their answers",
    "scale": "what a model size costs to train (tokens, FLOPs, GPU-hours, tCO2) and needs in memory, per GPU",
    "compress": "the model in fp32, bf16, int8 and GGUF types, and pruned: size, speed, perplexity, agreement",
    "distill": "a smaller student (blocks removed) distilled from the model with trl's GKD trainer",
    "replay": "make a result again from its capsule (--capsule FILE) and say whether it matches exactly",
}


def build_parser(argv: Sequence[str] = ()) -> OneLineParser:
    """The parser, with only the command being run loaded: `--help` and a command's own flags
    never import the model stack of the other commands (torch and transformers take seconds)."""
    parser = OneLineParser(prog="python -m pipelines", description="LLM Playground pipelines, headless")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        if name == chosen:
            importlib.import_module(f"{__name__}.{name}").register(subparsers, help_text)
        else:
            subparsers.add_parser(name, help=help_text)  # listed; its flags load when it is the one run
    return parser


def walk() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """Every command path and its parser, top first, sub-commands in the order they are declared
    (each command loaded as it would be when run): for the `--help` test and the CLI reference."""
    found: list[tuple[list[str], argparse.ArgumentParser]] = [([], build_parser())]
    for command in COMMANDS:
        parser = build_parser([command])
        stack = [([command], _child(parser, command))]
        while stack:
            path, sub = stack.pop(0)
            found.append((path, sub))
            for action in sub._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack[:0] = [([*path, name], child) for name, child in action.choices.items()]
    return found


def _child(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)

    def run() -> int:
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            raise UsageError("a command is required; see `python -m pipelines --help`")
        configure_logging(args.verbose)
        args.argv = argv  # what a "command" capsule records (common.keep_capsule)
        return args.handler(args)

    return run_guarded(run)
