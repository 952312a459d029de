"""`python -m pipelines workshop create|status|reveal|export`: run a class (pipelines/lessons/workshops.py).

The JSON of `create` and `status` is a contract other tools read: `create` prints {"name", "code",
"link", "lessons", "tabs", "expires_at"} (and what is pinned); `status` prints {"students": [{"name",
"steps_done", "checks_right", "checks_answered", "last_seen"}], "funnel": [{"lesson", "step",
"reached", "done", "checks_right"}]} (and the answers per check).
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import asdict
from pathlib import Path

from pipelines.cli.common import add_spec_flags, emit_json, needs_action


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    from pipelines.lessons.workshops import WorkshopSpec

    parser = subparsers.add_parser("workshop", help=help_text)
    commands = parser.add_subparsers(dest="workshop_command", metavar="ACTION", parser_class=type(parser))
    create = commands.add_parser("create", help="a workshop with a join code for its students")
    create.add_argument("name")
    create.add_argument("--lesson", action="append", required=True, metavar="ID", help="a lesson (repeat for several)")
    create.add_argument("--tabs", help="comma-separated tabs students may use (default: all)")
    create.add_argument("--drive", help="a label drive for the class")
    create.add_argument("--adapter", help="the adapter pinned for the class")
    add_spec_flags(create, WorkshopSpec)
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=run_create, **asdict(WorkshopSpec()))
    status = commands.add_parser("status", help="students x steps, the funnel per step, the answers")
    status.add_argument("name")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=run_status)
    reveal = commands.add_parser("reveal", help="students see the expected answers from now on (--hide: no longer)")
    reveal.add_argument("name")
    reveal.add_argument("--hide", action="store_true", help="hide the expected answers again")
    reveal.add_argument("--json", action="store_true")
    reveal.set_defaults(handler=run_reveal)
    export = commands.add_parser("export", help="every student's every step as CSV")
    export.add_argument("name")
    export.add_argument("--out", required=True, metavar="FILE.csv")
    export.add_argument("--json", action="store_true")
    export.set_defaults(handler=run_export)
    parser.set_defaults(handler=needs_action("workshop", "create, status, reveal or export"))


def run_create(args: argparse.Namespace) -> int:
    from pipelines.lessons import workshops

    workshop = workshops.create(
        args.name,
        list(args.lesson),
        tabs=[t.strip() for t in args.tabs.split(",") if t.strip()] if args.tabs else None,
        spec=workshops.WorkshopSpec(expires_hours=args.expires_hours, reveal=args.reveal),
        pinned={"adapter": args.adapter} if args.adapter else None,
        drive=args.drive,
        created_by="cli",
    )
    if args.json:
        emit_json(workshop.to_json())
    else:
        ends = datetime.datetime.fromtimestamp(workshop.expires_at).strftime("%Y-%m-%d %H:%M")
        print(f"workshop {workshop.name}: join code {workshop.code} (link {workshop.link}), open until {ends}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from pipelines.lessons import workshops

    report = workshops.status(args.name)
    if args.json:
        emit_json(report)
        return 0
    print(f"workshop {report['workshop']} (code {report['code']}): {len(report['students'])} students")
    for row in report["funnel"]:
        checked = f", {row['checks_right']}/{row['checks_answered']} right" if row["checked"] else ""
        print(f"  {row['lesson']} step {row['step']}: reached {row['reached']}, done {row['done']}{checked}")
    for person in report["students"]:
        print(
            f"  {person['name']}: {person['steps_done']} steps done, "
            f"{person['checks_right']}/{person['checks_answered']} checks right, idle {person['idle_seconds']:.0f} s"
        )
    if report["idle"]:
        print(f"  idle for {workshops.IDLE_SECONDS // 60} minutes or more: {', '.join(report['idle'])}")
    return 0


def run_reveal(args: argparse.Namespace) -> int:
    from pipelines.lessons import workshops

    workshop = workshops.set_reveal(args.name, not args.hide)
    if args.json:
        emit_json({"workshop": workshop.name, "reveal": workshop.reveal})
    else:
        print(f"workshop {workshop.name}: expected answers {'shown' if workshop.reveal else 'hidden'} after a check")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pipelines.lessons import workshops

    rows = workshops.export_csv(args.name, Path(args.out))
    if args.json:
        emit_json({"workshop": args.name, "rows": rows, "out": str(args.out)})
    else:
        print(f"{rows} rows written to {args.out}")
    return 0
