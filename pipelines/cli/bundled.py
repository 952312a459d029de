"""`python -m pipelines bundled list|measure|record`: the ready-made results shipped with the project."""

from __future__ import annotations

import argparse

from pipelines.cli.common import UsageError, emit_json, needs_action, quiet_stdout
from pipelines.engine import bundled
from pipelines.train import bundled_figures


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("bundled", help=help_text)
    commands = parser.add_subparsers(dest="bundled_command", metavar="ACTION", parser_class=type(parser))
    listing = commands.add_parser("list", help="each bundled result: kind, the command that made it, its figures")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_list)
    measure = commands.add_parser("measure", help="recompute a bundled result's figures on its held-out data")
    measure.add_argument("name", metavar="NAME")
    measure.add_argument("--json", action="store_true")
    measure.set_defaults(handler=run_measure)
    record = commands.add_parser(
        "record", help="(maintainers) measure a result copied into assets/bundled/ and write its figures"
    )
    record.add_argument("name", metavar="NAME")
    record.add_argument("--reproduce", required=True, metavar="COMMAND", help="the command that trained it")
    record.add_argument("--json", action="store_true")
    record.set_defaults(handler=run_record)
    parser.set_defaults(handler=needs_action("bundled", "list, measure, record"))


def measurers() -> bundled_figures.Measurers:
    """How results of the wings above training are measured (bundled_figures cannot import them)."""
    from pipelines.inside import tuned_lens
    from pipelines.reasoning import grpo

    return {"grpo": grpo.bundled_figures, "tuned_lens": tuned_lens.bundled_figures}


def _located(name: str) -> None:
    try:
        bundled.locate(name)
    except ValueError as error:
        raise UsageError(f"NAME: {error}") from error


def run_list(args: argparse.Namespace) -> int:
    found = bundled.catalogue()
    if args.json:
        emit_json({"bundled": found})
    for item in [] if args.json else found:
        figures = ", ".join(f"{k}={v:.4g}" for k, v in item.get("figures", {}).items())
        print(f"{item['name']} ({item['kind']}): {figures}\n  reproduce: {item.get('reproduce', '?')}")
    return 0


def run_measure(args: argparse.Namespace) -> int:
    _located(args.name)
    with quiet_stdout(args.json):
        figures = bundled_figures.measure(args.name, measurers())
    recorded = bundled.recipe(bundled.locate(args.name)).get("figures", {})
    if args.json:
        emit_json({"name": args.name, "figures": figures, "recorded": recorded})
    else:
        for key, value in figures.items():
            print(f"{key}: {value:.4f} (recorded {recorded.get(key, float('nan')):.4f})")
    return 0


def run_record(args: argparse.Namespace) -> int:
    _located(args.name)
    with quiet_stdout(args.json):
        written = bundled_figures.record(args.name, args.reproduce, measurers())
    if args.json:
        emit_json({"name": args.name, **written})
    else:
        print(f"{args.name}: {written}")
    return 0
