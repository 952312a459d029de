"""Every `--help` of every command and sub-command exits 0 with its usage (issue 35, L7: `prefs --help`
crashed on a bare '%' in a help text; issue 36 asks that a test walks them all)."""

from __future__ import annotations

import pytest

from pipelines import cli

PATHS = [path for path, _ in cli.walk()]


def test_the_walk_finds_the_sub_commands():
    assert ["prefs", "drive", "create"] in PATHS and ["db", "status"] in PATHS and len(PATHS) > 40


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "(top)")
def test_help_exits_zero(path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([*path, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pipelines")
