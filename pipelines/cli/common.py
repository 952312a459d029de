"""What every subcommand shares: sampling flags, quiet stdout, one-line errors, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import InvalidParameter, PlaygroundError

if TYPE_CHECKING:
    from ..sampling import SamplingParams


class UsageError(PlaygroundError):
    """The command was misused (bad flag, bad file); printed as one line, exit status 2."""


class CommandFailed(PlaygroundError):
    """The command ran but its work failed (e.g. a training job); one line, exit status 1."""

    exit_code = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a misuse is reported on one line without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def needs_action(command: str, actions: str):
    """Handler for a command group called without its action (e.g. `reward` alone)."""

    def handler(_args: argparse.Namespace) -> int:
        raise UsageError(f"{command} needs an action: {actions}")

    return handler


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    from ..sampling import SamplingParams  # only for a command that samples (it loads torch)

    defaults = SamplingParams()
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=defaults.temperature, help="0 means greedy")
    group.add_argument("--top-k", type=int, default=defaults.top_k, help="0 means off")
    group.add_argument("--top-p", type=float, default=defaults.top_p, help="1 means off")
    group.add_argument("--min-p", type=float, default=defaults.min_p, help="0 means off")
    group.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    group.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    group.add_argument("--seed", type=int, default=None, help="same seed + settings = same text")
    group.add_argument("--stop", nargs="+", action="extend", default=[], metavar="S", help="stop strings")


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    from ..sampling import SamplingParams

    return SamplingParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=tuple(args.stop),
    )


def emit_json(document: Any) -> None:
    """The one JSON document a `--json` command prints (call it outside `quiet_stdout`)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def quiet_stdout(json_mode: bool) -> Iterator[None]:
    """In --json mode, anything libraries print goes to stderr so stdout stays one document."""
    if not json_mode:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if not verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def run_guarded(func: Callable[[], int]) -> int:
    """Run a command; every refusal of the error family becomes one line on stderr and its exit status
    (2: the input was wrong, 1: something could not be done), without importing what raised it."""
    try:
        return func()
    except PlaygroundError as error:
        kind = "invalid parameter " if isinstance(error, InvalidParameter) else ""
        print(f"error: {kind}{error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
