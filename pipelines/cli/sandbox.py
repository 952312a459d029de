"""`python -m pipelines sandbox run FILE.py`: run a program's solution() under the sandbox's limits."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines import sandbox
from pipelines.cli.common import UsageError, emit_json, needs_action


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("sandbox", help=help_text)
    commands = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", parser_class=type(parser))
    run = commands.add_parser(
        "run", help="run FILE's solution() with CPU, memory, file, process, network and time limits"
    )
    run.add_argument("file", metavar="FILE.py")
    run.add_argument("--timeout", type=float, default=sandbox.SandboxLimits.timeout_seconds, help="wall-clock seconds")
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=run_program)
    parser.set_defaults(handler=needs_action("sandbox", "run"))


def run_program(args: argparse.Namespace) -> int:
    """Exit 0 whether or not the program failed (the output says); non-zero only for misuse."""
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"FILE: no such file {args.file!r}")
    if path.stat().st_size > sandbox.MAX_SOURCE_CHARS * 4:
        raise UsageError(f"FILE: over {sandbox.MAX_SOURCE_CHARS:,} characters")
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError("FILE: not UTF-8 text") from error
    try:
        limits = sandbox.SandboxLimits(timeout_seconds=args.timeout, cpu_seconds=max(1, int(args.timeout + 0.999)))
    except ValueError as error:
        raise UsageError(f"--timeout: {error}") from error
    result = sandbox.run(source, limits)
    if args.json:
        emit_json(result.to_json())
    else:
        print(f"ok: {result.ok}\nresult: {result.result!r}\nerror: {result.error}")
        if result.stdout:
            print("stdout:\n" + result.stdout)
    return 0
