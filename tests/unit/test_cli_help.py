"""Every `--help` of every command and sub-command exits 0 with its usage (issue 35, L7: `prefs --help`
crashed on a bare '%' in a help text; issue 36 asks that a test walks them all)."""

from __future__ import annotations

import argparse

import pytest

from pipelines import cli


def _paths() -> list[list[str]]:
    """Every command path, found by walking the parsers (each command loaded as it would be when run)."""
    found: list[list[str]] = [[]]
    for command in cli.COMMANDS:
        parser = cli.build_parser([command])
        stack = [([command], _subparser(parser, command))]
        while stack:
            path, sub = stack.pop()
            found.append(path)
            for action in sub._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack.extend(([*path, name], child) for name, child in action.choices.items())
    return found


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


PATHS = _paths()


def test_the_walk_finds_the_sub_commands():
    assert ["prefs", "drive", "create"] in PATHS and ["db", "status"] in PATHS and len(PATHS) > 40


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "(top)")
def test_help_exits_zero(path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([*path, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pipelines")
