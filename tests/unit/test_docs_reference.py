"""The reference pages are generated from the definitions they describe, and stay so.

docs/reference/{configuration,cli,settings}.md come from `pipelines.config.VARIABLES`, the CLI's
parsers and the specs' knobs (scripts/reference.py); a change to any of those without `make docs`
fails here, as does an environment variable the code reads without declaring it.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

from pipelines import config
from tests.helpers import ROOT


def _generator():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "scripts" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_pages_are_what_the_definitions_say(capsys):
    assert _generator().main(["--check"]) == 0, capsys.readouterr().err


def test_every_variable_the_code_reads_is_declared_and_documented():
    used = set()
    for base in ("pipelines", "playground"):
        for path in (ROOT / base).rglob("*.py"):
            used |= set(re.findall(r"PLAYGROUND_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    used |= set(re.findall(r"PLAYGROUND_[A-Z0-9_]+", (ROOT / "app.py").read_text(encoding="utf-8")))
    declared = {v.name for v in config.VARIABLES}
    assert used <= declared, f"read but not declared in config.VARIABLES: {sorted(used - declared)}"
    page = (ROOT / "docs" / "reference" / "configuration.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in page for name in declared)


def test_an_undeclared_variable_is_refused():
    with pytest.raises(KeyError, match="not declared"):
        config.env("PLAYGROUND_NO_SUCH_THING")
