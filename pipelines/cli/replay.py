"""`python -m pipelines replay CAPSULE.json`: make a capsule's result again and say whether it matches."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from typing import Any

from pipelines.cli.common import emit_json, quiet_stdout

# the commands whose --capsule is a "command" capsule: views and evaluations that compute, never train
# or write what another command reads (what a capsule may name is only ever one of these)
REPLAYABLE = frozenset({"inspect", "compress", "scale", "reward eval", "reward score", "align eval", "reason bench"})


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("replay", help=help_text)
    parser.add_argument(
        "capsule", metavar="CAPSULE.json", help="a capsule written by --capsule or the app's 'Save capsule'"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.replay import capsules, replay

    document = capsules.read(args.capsule)  # refused (exit 2) before any model loads
    with quiet_stdout(args.json):
        answer = replay.replay(document, {"command": replay_command})
    if args.json:
        emit_json(answer)
    else:
        verdict = "matches" if answer["match"] else "DIFFERS"
        print(f"{answer['kind']}: the replayed result {verdict} the original")
        for key in ("reason", "note"):
            if key in answer:
                print(f"{key}: {answer[key]}")
        if "text" in answer["replayed"]:
            print(answer["replayed"]["text"])
    return 0 if answer["match"] else 1


def replay_command(handle: Any, document: dict) -> tuple[dict, str]:
    """Run a "command" capsule's command again, in this process, and take the JSON it prints; refused first
    when a file it read or a model it named has changed."""
    from pipelines.cli import build_parser
    from pipelines.replay import capsules
    from pipelines.replay.replay import recorded_adapter, refuse_changed_file, refuse_changed_reward_model

    inputs = document["inputs"]
    argv = inputs.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise capsules.CapsuleError("the capsule's argv is not a list of arguments")
    named = argv[0] if argv[0] in REPLAYABLE else " ".join(argv[:2])
    if named not in REPLAYABLE:
        raise capsules.CapsuleError(
            f"`{' '.join(argv[:2])}` is not replayed from a capsule; these are: {', '.join(sorted(REPLAYABLE))}"
        )
    for item in inputs.get("files") or []:
        refuse_changed_file(item.get("path"), item.get("sha256"), "the file")
    judge = inputs.get("reward_model")
    if isinstance(judge, dict):
        refuse_changed_reward_model(judge.get("name"), judge.get("sha256"))
    recorded_adapter(document)
    args = build_parser(argv).parse_args([*argv, "--json"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        args.handler(args)
    return json.loads(printed.getvalue().strip().splitlines()[-1]), "cli"
