"""`python app.py` with a model that cannot be used: one clear reason and exit status 1, never a half-working app.

The server starts while the weights load (models.load_in_background), so what only loading can
tell (a Hub id on an offline machine) is found after it is up; the app must still stop with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.system


def run_app(tmp_path, model: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PLAYGROUND_DATA_DIR": str(tmp_path / "data"),
        "PLAYGROUND_MODEL": model,
        "PLAYGROUND_PORT": str(free_port()),
        "PLAYGROUND_HOST": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def test_a_missing_model_directory_stops_the_app_before_it_serves(tmp_path):
    result = run_app(tmp_path, str(tmp_path / "no-such-dir"))
    assert result.returncode == 1
    assert "no such model directory" in result.stderr
    assert "Running on" not in result.stdout


def test_a_model_that_only_fails_to_load_stops_the_started_app_with_the_reason(tmp_path):
    result = run_app(tmp_path, "nobody-here/no-such-model-xyz")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "no-such-model-xyz" in error_lines[0] and "PLAYGROUND_MODEL" in error_lines[0]
