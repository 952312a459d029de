"""`python -m pipelines prefs import|export|stats`: preference labels in and out of the store, and what they say."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import agreement, preference_data, preference_stats, preferences
from .common import UsageError, emit_json, needs_action


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
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(handler=run_export)
    stats = commands.add_parser(
        "stats", help="labels per annotator, agreement (raw, Cohen's kappa, Krippendorff's alpha), ratings with 95% CIs"
    )
    stats.add_argument("--rounds", type=int, default=200, help="bootstrap resamples of the votes (default: 200)")
    stats.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=run_stats)
    prefs.set_defaults(handler=needs_action("prefs", "import, export or stats"))


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
    try:
        result = preference_data.export(args.out, args.format)
    except preferences.PreferenceError as error:
        raise UsageError(str(error)) from error
    if args.json:
        emit_json(result)
    else:
        print(
            f"wrote {result['rows']} rows to {result['path']} ({result['pairs']} pairs, {result['unpaired']} unpaired in the store)"
        )
    return 0


def run_stats(args: argparse.Namespace) -> int:
    if not 0 <= args.rounds <= 10_000:
        raise UsageError(f"--rounds: between 0 and 10000, got {args.rounds}")
    items = list(preferences.all_items())
    counts = preference_stats.stats(items)
    board = preference_stats.leaderboard(items, rounds=args.rounds, seed=args.seed)
    report = {
        "labels": counts["labels"],
        "items": counts["items"],
        "annotators": [{"name": name, "labels": n} for name, n in counts["per_annotator"].items()],
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
    return 0
