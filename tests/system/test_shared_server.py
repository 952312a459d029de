"""Two users run the app on one machine (a class server): both accept uploads, and neither can read the other's data.

Issue 35, L4: Gradio kept every app's uploads in /tmp/gradio; the first user's app owned it, so the
second user's uploads failed with HTTP 500, and data files were world-readable. Each app runs here
as its own non-root uid, with an interpreter those users can run (a venv made from the system's
Python that reads this environment's packages), as `python app.py` on the tiny model.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port

pytestmark = [pytest.mark.system, pytest.mark.skipif(os.geteuid() != 0, reason="switches users: runs as root")]
SYSTEM_PYTHON = "/usr/bin/python3"
USERS = (4301, 4302)


def _runtime(base: Path) -> Path:
    """A venv of the system's Python whose packages are this environment's (read-only for the users)."""
    if not (shutil.which("setpriv") and os.path.exists(SYSTEM_PYTHON)):
        pytest.skip(f"needs setpriv and {SYSTEM_PYTHON}")
    venv = base / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "playground-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin" / "python"


def test_two_users_on_one_machine_both_accept_uploads_and_keep_their_data_private(tiny_model_dir):
    base = Path(tempfile.mkdtemp(prefix="class-server-", dir="/tmp"))
    processes = []
    try:
        base.chmod(0o755)
        python = _runtime(base)
        model = base / "model"
        shutil.copytree(tiny_model_dir, model)
        for path in [model, *model.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        probe = subprocess.run(
            [
                "setpriv",
                f"--reuid={USERS[0]}",
                f"--regid={USERS[0]}",
                "--clear-groups",
                str(python),
                "-c",
                "import gradio, torch, pipelines",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(base)},
        )
        if probe.returncode != 0:
            pytest.skip(f"this environment's packages or code cannot be read by another user: {probe.stderr[-300:]}")
        urls = []
        for uid in USERS:
            home = base / f"user{uid}"
            home.mkdir()
            os.chown(home, uid, uid)
            port = free_port()
            env = {
                "PATH": "/usr/bin:/bin",
                "HOME": str(home),
                "PLAYGROUND_DATA_DIR": str(home / "data"),
                "PLAYGROUND_MODEL": str(model),
                "PLAYGROUND_PORT": str(port),
                "PLAYGROUND_HOST": "127.0.0.1",
                "HF_HUB_OFFLINE": "1",
                "GRADIO_ANALYTICS_ENABLED": "False",
            }
            log = (base / f"app-{uid}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [
                        "setpriv",
                        f"--reuid={uid}",
                        f"--regid={uid}",
                        "--clear-groups",
                        str(python),
                        str(ROOT / "app.py"),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            urls.append((f"http://127.0.0.1:{port}/", home / "data", base / f"app-{uid}.log"))
        for (url, _, log_path), process in zip(urls, processes, strict=False):
            deadline = time.time() + 180
            while True:
                assert process.poll() is None, log_path.read_text()[-2000:]
                try:
                    urllib.request.urlopen(url, timeout=1).close()
                    break
                except OSError:
                    assert time.time() < deadline, "the app did not start"
                    time.sleep(0.3)

        from gradio_client import Client, handle_file

        rows = base / "rows.jsonl"
        rows.write_text('{"prompt": "Hi", "response": "Hello"}\n' * 3)
        rows.chmod(0o644)
        for url, data, log_path in urls:
            checked = Client(url, verbose=False).predict(
                upload=handle_file(str(rows)), sample=None, api_name="/check_dataset"
            )
            assert "3 rows" in str(checked), (checked, log_path.read_text()[-2000:])
            uploads = data / "tmp" / "gradio"
            assert any(uploads.rglob("rows.jsonl")), "the upload lives under the app's own data directory"
            for path in (data, uploads):
                assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
            for path in data.rglob("*"):
                if path.is_file():
                    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path  # nothing for other users
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
