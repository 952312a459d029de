"""`python -m pipelines prefs import|export`: move preference labels in and out of the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import preference_data, preferences
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
    prefs.set_defaults(handler=needs_action("prefs", "import or export"))


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
