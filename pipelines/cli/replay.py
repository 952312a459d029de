"""`python -m pipelines replay CAPSULE.json`: make a capsule's result again and say whether it matches."""

from __future__ import annotations

import argparse

from pipelines.cli.common import emit_json, quiet_stdout


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
        answer = replay.replay(document)
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
