"""`python -m pipelines prefs import|export|stats|drive`: preference labels in and out of the store,
what they say, and the label drives that collect them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli.common import UsageError, add_spec_flags, emit_json, needs_action, spec_args
from pipelines.labels import agreement, drives, preference_data, preference_stats, preferences


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    prefs = subparsers.add_parser("prefs", help=help_text)
    commands = prefs.add_subparsers(dest="prefs_command", metavar="ACTION", parser_class=type(prefs))
    imp = commands.add_parser("import", help="add trl-format preference rows (JSONL, Parquet, datasets dir)")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--annotator", default=None, help="recorded as who gave the labels (default import:<file>)")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(handler=run_import)
    exp = commands.add_parser("export", help="write the labels in trl's format")
    exp.add_argument("--out", required=True, metavar="FILE")
    exp.add_argument("--format", choices=["jsonl", "parquet", "dataset", "unpaired"], default="jsonl")
    exp.add_argument(
        "--consensus",
        nargs="?",
        const="majority",
        choices=preference_data.CONSENSUS_RULES,
        default=None,
        help="one row per item, only where its labels agree: majority (more than half, the default) or unanimous; "
        "an item in a drive needs its overlap's labels first",
    )
    exp.add_argument(
        "--consensus-ties",
        choices=preference_data.CONSENSUS_TIES,
        default="count",
        help="count: tie and both-bad are answers of their own (default); ignore: they abstain and decisive votes decide",
    )
    exp.add_argument(
        "--no-gold-filter",
        action="store_true",
        help="keep labels of annotators below their drive's gold threshold (marked passed_gold: false)",
    )
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(handler=run_export)
    stats = commands.add_parser(
        "stats",
        help="labels per annotator, agreement (raw, Cohen's kappa, Krippendorff's alpha), ratings with 95%% CIs",
    )
    stats.add_argument("--rounds", type=int, default=200, help="bootstrap resamples of the votes (default: 200)")
    stats.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    stats.add_argument("--drive", default=None, metavar="NAME", help="only the items of this label drive")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=run_stats)
    _register_drive(commands, type(prefs))
    prefs.set_defaults(handler=needs_action("prefs", "import, export, stats or drive"))


def _register_drive(commands: argparse._SubParsersAction, parser_class: type) -> None:
    drive = commands.add_parser("drive", help="label drives: items wanted from k annotators each, with gold checks")
    actions = drive.add_subparsers(dest="drive_command", metavar="ACTION", parser_class=parser_class)
    create = actions.add_parser("create", help="create a drive, or change an existing drive's settings")
    create.add_argument("name", metavar="NAME")
    add_spec_flags(create, drives.DriveSettings)
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=run_drive_create)
    add = actions.add_parser(
        "add",
        help="put items in a drive: from a file (prompt + responses [+ gold], or trl pairs as gold items), "
        "or stored items by id or origin",
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("--file", default=None, metavar="FILE", help="JSONL, JSON, Parquet or a datasets dir")
    add.add_argument("--items", nargs="+", default=[], metavar="ID", help="ids of stored items")
    add.add_argument(
        "--origin", default=None, help="every stored item of this origin not yet in a drive, e.g. promptset:NAME"
    )
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=run_drive_add)
    gold = actions.add_parser("gold", help="mark a drive's item as gold with its known answer (or --clear)")
    gold.add_argument("item", metavar="ITEM_ID")
    gold.add_argument(
        "answer", nargs="?", default=None, help="A, B, tie, 'both bad', up, down or a ranking 'B > A = C'"
    )
    gold.add_argument("--clear", action="store_true", help="an ordinary item again")
    gold.add_argument("--json", action="store_true")
    gold.set_defaults(handler=run_drive_gold)
    status = actions.add_parser("status", help="a drive's progress, per annotator")
    status.add_argument("name", metavar="NAME")
    status.add_argument("--annotator", default=None, help="also this annotator's done / assigned / available")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=run_drive_status)
    listing = actions.add_parser("list", help="every drive and its settings")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_drive_list)
    drive.set_defaults(handler=needs_action("prefs drive", "create, add, gold, status or list"))


def run_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise UsageError(f"no such file {args.file!r}")
    result = preference_data.import_file(path, annotator=args.annotator)  # a refusal exits 2, as a misuse
    if args.json:
        emit_json(result.to_json())
    else:
        print(f"imported {result.imported} rows; {len(result.errors)} rows skipped")
        for problem in result.errors[:20]:
            print(f"  line {problem['line']}: {problem['error']}")
    if result.errors and not result.imported:  # nothing usable at all: a script must notice
        first = result.errors[0]
        print(
            f"error: no row of {path.name} could be imported (line {first['line']}: {first['error']})", file=sys.stderr
        )
        return 2
    return 0


def run_export(args: argparse.Namespace) -> int:
    options = preference_data.ExportOptions(
        gold_filter=not args.no_gold_filter, consensus=args.consensus, consensus_ties=args.consensus_ties
    )
    try:
        result = preference_data.export(args.out, args.format, options)
    except preferences.PreferenceError as error:
        raise UsageError(str(error)) from error
    if args.json:
        emit_json(result)
    else:
        print(
            f"wrote {result['rows']} rows to {result['path']} ({result['pairs']} pairs, {result['unpaired']} unpaired in the store)"
        )
        for phrase in preference_data.left_out(result):
            print(f"left out: {phrase}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    if not 0 <= args.rounds <= 10_000:
        raise UsageError(f"--rounds: between 0 and 10000, got {args.rounds}")
    items = list(preferences.all_items())
    if args.drive is not None:
        drives.get(args.drive)  # an unknown drive is refused, naming the drives there are
        members = drives.membership()
        items = [item for item in items if members.get(item.id) == args.drive]
    counts = preference_stats.stats(items)
    board = preference_stats.leaderboard(items, rounds=args.rounds, seed=args.seed)
    gold = preference_stats.gold_accuracy(items, drives.gold_answers(args.drive))
    report = {
        "labels": counts["labels"],
        "items": counts["items"],
        "annotators": [
            {"name": name, "labels": n, **gold.get(name, {})} for name, n in counts["per_annotator"].items()
        ],
        "agreement": agreement.agreement(items),
        "leaderboard": board,
        "leaderboard_note": None if board else preference_stats.leaderboard_gap(items),
        "win_rates": preference_stats.win_rates(items),
    }
    if args.json:
        emit_json(report)
        return 0
    found = report["agreement"]
    print(f"{report['labels']} labels on {report['items']} items by {len(report['annotators'])} annotators")
    for name, value in (("raw agreement", found["raw"]), ("Krippendorff's alpha", found["krippendorff_alpha"])):
        print(f"{name}: {'n/a' if value is None else f'{value:.3f}'}")
    for row in board:
        print(
            f"{row['source']}: {row['rating']:.0f} [{row['ci_low']:.0f}, {row['ci_high']:.0f}] over {row['comparisons']}"
        )
    if not board:
        print(f"leaderboard: {report['leaderboard_note']}")
    for person in report["annotators"]:
        if "gold_accuracy" in person:
            print(f"{person['name']}: {person['gold_correct']} of {person['gold_answered']} gold items right")
    return 0


def run_drive_create(args: argparse.Namespace) -> int:
    drive, created = drives.save(args.name, drives.DriveSettings(**spec_args(args, drives.DriveSettings)))
    if args.json:
        emit_json({**drive.to_json(), "created": created})
    else:
        print(f"{'created' if created else 'updated'} drive {drive.name}: {drive.overlap} annotator(s) per item")
    return 0


def run_drive_add(args: argparse.Namespace) -> int:
    drives.get(args.name)
    if not (args.file or args.items or args.origin):
        raise UsageError("prefs drive add: give --file, --items or --origin")
    added, gold, errors = 0, 0, []
    if args.file:
        path = Path(args.file)
        if not path.exists():
            raise UsageError(f"--file: no such file {args.file!r}")
        found = preference_data.import_drive_items(path, args.name)
        added, gold, errors = found.imported, found.gold, found.errors
    ids = list(args.items)
    if args.origin:
        members = drives.membership()
        ids += [i.id for i in preferences.all_items() if i.origin == args.origin and i.id not in members]
    if ids:
        added += drives.add_items(args.name, ids)
    report = {"drive": args.name, "added": added, "gold": gold, "errors": errors}
    if args.json:
        emit_json(report)
    else:
        print(f"added {added} items to {args.name} ({gold} gold); {len(errors)} rows skipped")
        for problem in errors[:20]:
            print(f"  line {problem['line']}: {problem['error']}")
    if errors and not added:
        first = errors[0]
        print(f"error: no row could be added (line {first['line']}: {first['error']})", file=sys.stderr)
        return 2
    return 0


def run_drive_gold(args: argparse.Namespace) -> int:
    if args.clear == (args.answer is not None):
        raise UsageError("prefs drive gold: give the known answer, or --clear")
    answer = None
    if not args.clear:
        item = preferences.get_item(args.item)
        answer = preference_data.parse_answer(args.answer, len(item.responses))
    drive = drives.set_gold(args.item, answer)
    report = {"item_id": args.item, "drive": drive, "gold": None if answer is None else answer.choice}
    if args.json:
        emit_json({**report, "ranking": None if answer is None else answer.ranking})
    else:
        print(
            f"item {args.item} of {drive}: " + ("an ordinary item" if answer is None else f"gold, answer {args.answer}")
        )
    return 0


def run_drive_status(args: argparse.Namespace) -> int:
    report = drives.progress(args.name, args.annotator)
    if args.json:
        emit_json(report)
        return 0
    print(drives.describe(report).replace("**", "").replace("  \n", "\n"))
    for person in report["annotators"]:
        print(
            f"  {person['name']}: {person['done']} done of {person['assigned']} assigned, {person['available']} available"
        )
    return 0


def run_drive_list(args: argparse.Namespace) -> int:
    found = [drive.to_json() for drive in drives.all_drives()]
    if args.json:
        emit_json({"drives": found})
    else:
        for drive in found:
            print(f"{drive['name']}: overlap {drive['overlap']}, gold threshold {drive['gold_threshold']}")
        if not found:
            print("no label drives yet: `prefs drive create NAME --overlap 3`")
    return 0
