"""The attack set as an ordinary user, the way a Space (uid 1000) or a laptop runs the app.

Issue 17 found that with the app and the sandboxed program under the same non-root uid, a program
could set another process's limits, nice value, affinity and scheduler, fill the disk, connect to
the user's UNIX sockets, watch files with inotify, forge its own report and crash the host side.
tests/sandbox_attacks.py runs every attack against a stand-in process of that user, with and
without namespaces (the second is what a host without user namespaces gets), and reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipelines import sandbox
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # trains models or spawns processes: `make test-fast` skips it

UID = 4321  # no passwd entry needed: setpriv switches the ids themselves
SYSTEM_PYTHON = "/usr/bin/python3"
ERRNO_ENOSPC, ERRNO_EPERM, ERRNO_EACCES = 28, 1, 13


def _command(code: Path, *extra: str) -> list[str]:
    script = [str(code / "sandbox_attacks.py"), str(code), *extra]
    if os.geteuid() != 0:
        return [sys.executable, *script]  # already an ordinary user
    if not (shutil.which("setpriv") and os.path.exists(SYSTEM_PYTHON)):
        pytest.skip(f"needs setpriv and {SYSTEM_PYTHON} to run the attacks as an ordinary user")
    # this environment's own Python may live where other users cannot read: use the system's
    return ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", SYSTEM_PYTHON, *script]


@pytest.fixture(scope="module", params=["namespaces", "no-namespaces"])
def report(request):
    code = Path(tempfile.mkdtemp(prefix="sandbox-code-", dir="/tmp"))
    try:
        (code / "pipelines").mkdir()
        shutil.copy(ROOT / "pipelines" / "__init__.py", code / "pipelines")
        # the sandbox's one import beyond the standard library: the error family (itself stdlib-only)
        shutil.copy(ROOT / "pipelines" / "errors.py", code / "pipelines")
        shutil.copytree(
            ROOT / "pipelines" / "sandbox", code / "pipelines" / "sandbox", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy(ROOT / "tests" / "sandbox_attacks.py", code)
        for path in [code, *code.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        extra = ["--no-namespaces"] if request.param == "no-namespaces" else []
        done = subprocess.run(
            _command(code, *extra),
            capture_output=True,
            text=True,
            timeout=240,
            cwd="/tmp",
            env={"PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return request.param, json.loads(done.stdout)
    finally:
        shutil.rmtree(code, ignore_errors=True)


def test_runs_as_an_ordinary_user(report):
    mode, data = report
    assert data["uid"] != 0
    protections = data["good"]["protections"]
    assert data["good"]["ok"] and data["good"]["result"] == [3628800] and data["good"]["stdout"] == "hello\n"
    assert "seccomp allow-list" in protections and any(p.startswith("landlock ABI") for p in protections), protections
    if mode == "namespaces" and "user namespace" in protections:
        assert {"network namespace", "PID namespace"} <= set(protections)
        assert data["scratch"]["ok"] and data["scratch"]["result"] == "scratch works"
    else:  # no quota'd tmpfs: the scratch directory is read-only, said in protections
        assert any("read-only" in p for p in protections), protections
        assert not data["scratch"]["ok"]


def test_the_app_of_the_same_user_comes_out_unchanged(report):
    _, data = report
    attempts = data["processes"]["result"]
    assert attempts.pop("own_limit") == "done"  # its own limits are its business
    assert all(outcome != "done" for outcome in attempts.values()), attempts
    before, after = data["stand_in_before"], data["stand_in_after"]
    for key in ("nofile", "cpu", "as", "nice", "affinity", "scheduler"):
        assert before[key] == after[key], key
    assert after["state"] not in ("T", "t", "Z", "X") and data["stand_in_alive"]


def test_the_disk_is_bounded_in_bytes_and_files(report):
    _, data = report
    disk, many = data["disk"]["result"], data["many_files"]["result"]
    limits = sandbox.SandboxLimits()
    assert disk["written"] <= limits.disk_bytes and disk["stopped_by"] in (ERRNO_ENOSPC, ERRNO_EPERM, ERRNO_EACCES)
    assert many["files"] <= limits.files and many["stopped_by"] in (ERRNO_ENOSPC, ERRNO_EPERM, ERRNO_EACCES)


def test_no_unix_sockets_and_no_inotify(report):
    _, data = report
    assert all(str(outcome).startswith("socket: ") for outcome in data["unix_sockets"]["result"].values())
    assert data["unix_sockets_reached"] == []
    assert str(data["inotify"]["result"]).startswith("inotify_init1: ")


def test_the_report_cannot_be_forged_or_crash_the_host_side(report):
    _, data = report
    forged = data["forgery"]
    assert forged["ok"] is False and forged["result"] is None and "forged" not in forged["protections"]
    assert "result channel" in forged["error"]
    crashed = data["host_crash"]
    assert crashed["ok"] is False and crashed["error"] and isinstance(crashed["protections"], list)


def test_the_earlier_attacks_hold_as_an_ordinary_user_too(report):
    """The root-run attack set (tests/unit/test_sandbox.py) again, where nothing can rely on becoming `nobody`."""
    _, data = report
    earlier = dict(data["earlier"])
    assert not earlier["read_own_secret"]["ok"] and "hunter2" not in json.dumps(
        earlier
    )  # even the app user's own files
    assert not earlier["write_outside"]["ok"] and not data["outside_written"]
    assert not earlier["shell"]["ok"] or earlier["shell"]["result"] != 0
    assert not earlier["fork_bomb"]["ok"]
    assert str(earlier["tcp"]["result"]).startswith("socket: ") and not data["tcp_reached"]
    assert not earlier["memory_bomb"]["ok"] and "memory" in earlier["memory_bomb"]["error"]
    assert not earlier["endless"]["ok"] and (
        "CPU" in earlier["endless"]["error"] or "timed out" in earlier["endless"]["error"]
    )
    assert earlier["kill_parent"]["ok"] and "sent" not in str(earlier["kill_parent"]["result"])


def test_nothing_reaches_every_process_of_the_user_or_signals_one(report):
    """Issue 35, M4: with namespaces off, setpriority(PRIO_USER) put the app and the stand-in at nice 19, and
    F_SETOWN + F_SETSIG(SIGKILL) killed the stand-in where Landlock had no signal scope."""
    _, data = report
    attempts = data["whole_user"]["result"]
    assert attempts.pop("own_nice") == "done"  # its own priority is its business
    assert all(outcome == ERRNO_EPERM for outcome in attempts.values()), attempts
    after = data["whole_user_after"]
    assert after["app_nice"] == data["app_nice_before"]
    assert after["stand_in"]["nice"] == data["stand_in_before"]["nice"]
    assert after["stand_in"]["state"] not in ("T", "t", "Z", "X") and data["stand_in_alive"]


def test_the_program_dies_with_its_caller(report):
    """Issue 35, L2: a program outlived its caller (SIGKILLed), alive with 166 MB past its time limit."""
    _, data = report
    assert data["caller_killed"]["started"] == 2 and data["caller_killed"]["alive_after"] == []
