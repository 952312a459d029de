"""What every subcommand shares: sampling flags, quiet stdout, one-line errors, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.errors import InvalidParameter, PlaygroundError

if TYPE_CHECKING:
    from pipelines.engine.sampling import SamplingParams


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


def add_spec_flags(
    parser: argparse.ArgumentParser,
    spec_class: type,
    *,
    title: str | None = None,
    skip: Sequence[str] = (),
    one_of: Sequence[tuple[str, ...]] = (),
    at_most_one: Sequence[tuple[str, ...]] = (),
    required: Sequence[str] = (),
) -> None:
    """The flags of a spec, derived from its knobs: name, type, choices, help and range in one place.

    Defaults stay the spec's own (a flag not given is not passed), so `--help` shows them but no
    second copy decides them. A value out of range is refused while parsing, naming the flag.
    `one_of` groups need exactly one of their flags, `at_most_one` groups at most one.
    """
    from pipelines import knobs

    target = parser.add_argument_group(title) if title else parser
    groups: dict[str, Any] = {}
    for names, needed in [*((g, True) for g in one_of), *((g, False) for g in at_most_one)]:
        group = target.add_mutually_exclusive_group(required=needed)
        groups.update(dict.fromkeys(names, group))
    for name, k in knobs.knobs(spec_class).items():
        if name in skip or k.cli is not None:
            continue
        kind, _ = knobs.kinds(spec_class)[name]
        default = knobs.default(spec_class, name)
        flag = k.flag or "--" + name.replace("_", "-")
        shown = "" if default is None or kind in (bool, list) else f" (default: {default})"
        allowed = knobs.describe(k) if k.choices is None else ""
        help_text = k.help + (f"; {allowed}" if allowed and kind is not list else "") + shown
        options: dict[str, Any] = {"dest": name, "help": help_text.replace("%", "%%"), "default": argparse.SUPPRESS}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction if default else "store_true"
        elif kind is list:
            options.update(nargs="+", action="extend", metavar=k.metavar or "VALUE")
        else:
            options["type"] = _flag_type(spec_class, name, kind)
            if k.choices is not None:
                options["choices"] = k.choices
            else:
                options["metavar"] = k.metavar or ("N" if kind is int else "X" if kind is float else "TEXT")
        if name in required or (default is None and not knobs.kinds(spec_class)[name][1] and name not in groups):
            options["required"] = True
        groups.get(name, target).add_argument(flag, **options)


def _flag_type(spec_class: type, name: str, kind: type) -> Callable[[str], Any]:
    from pipelines import knobs

    def parse(text: str) -> Any:
        try:
            value = text if kind is str else _number(text, kind)
            return knobs.coerce(spec_class, name, value)
        except ValueError as error:  # InvalidParameter is a ValueError too
            message = (
                str(error).removeprefix(f"{name}: ")
                if isinstance(error, InvalidParameter)
                else f"not a number: {text!r}"
            )
            raise argparse.ArgumentTypeError(message) from None

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def _number(text: str, kind: type) -> float:
    if kind is int:
        try:
            return int(text)  # exact, even beyond a float's 53 bits (seeds)
        except ValueError:
            pass
    return float(text)


def spec_args(args: argparse.Namespace, spec_class: type, **overrides: Any) -> dict[str, Any]:
    """The spec's keyword arguments from the flags that were given (the rest keep the spec's defaults)."""
    from pipelines import knobs

    given = {name: getattr(args, name) for name in knobs.knobs(spec_class) if hasattr(args, name)}
    return given | overrides


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    from pipelines.engine.sampling import SamplingParams  # only for a command that samples (it loads torch)

    add_spec_flags(parser, SamplingParams, title="sampling")


def capsule_target(value: str) -> str:
    """`--capsule FILE`, refused at parse time where it could not be written (after a long run)."""
    from pathlib import Path

    target = Path(value)
    if target.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a directory; give a file name")
    if not target.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory {str(target.parent)!r}")
    return value


def add_capsule_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--capsule",
        metavar="FILE",
        type=capsule_target,
        help="also write a replay capsule of the result there (`python -m pipelines replay FILE` makes it again)",
    )


def keep_capsule(
    args: argparse.Namespace, report: dict[str, Any], *, reward_model: str | None = None, model: bool = True
) -> None:
    """With --capsule, a deterministic command's result written as a "command" capsule: its arguments
    (main() leaves them on `args.argv`), the files and models it read, the JSON it prints. `model`: whether
    the result came from the served model (its weights are then named, and checked on replay)."""
    if not getattr(args, "capsule", None):
        return
    from pipelines.engine import models
    from pipelines.replay import capsules, record

    argv = getattr(args, "argv", None)
    if argv is None:
        raise UsageError("--capsule: a command capsule is written by `python -m pipelines` itself")
    handle = models.get_handle() if model else None  # loaded already by the command that used it
    document = record.command(argv, report, handle, adapter=getattr(args, "adapter", None), reward_model=reward_model)
    capsules.write(args.capsule, document)


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    from pipelines.engine.sampling import SamplingParams

    return SamplingParams(**spec_args(args, SamplingParams))


def train_in_foreground(
    kind: str, name: str, spec: dict[str, Any], *, json_mode: bool, what: str, capsule: str | None = None
) -> Any:
    """Run a training job here, registered like any other; its JobInfo on success, None on the
    other ranks of a distributed run (`accelerate launch`: rank 0 records, publishes and prints,
    so the JSON document is printed once). A failed job is one line on every rank, exit status 1.
    With `capsule`, rank 0 also writes the job's replay capsule there."""
    from pipelines.store import jobs
    from pipelines.train import training

    training.check_distributed_launch()
    with quiet_stdout(json_mode):
        job = jobs.run_foreground(kind, name, spec, echo=True)
    if job.status != jobs.SUCCEEDED:
        where = f" (log: {jobs.log_path(job.id)})" if jobs.is_main_rank() else f" (rank {jobs.rank()})"
        raise CommandFailed(f"{what} {job.status}: {job.message}{where}")
    if not jobs.is_main_rank():
        return None
    if capsule:
        from pipelines.replay import capsules, record

        with quiet_stdout(json_mode):
            capsules.write(capsule, record.finished_job(job))
    return job


DISTRIBUTED_FIELDS = ("world_size", "ranks_agree", "weights_sha256")


def distributed_fields(result: dict[str, Any]) -> dict[str, Any]:
    """How many processes trained and whether they ended with the same weights (their digest)."""
    return {key: result[key] for key in DISTRIBUTED_FIELDS if key in result}


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
