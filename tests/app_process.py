"""`python app.py` as a real process, for tests that pull its plug or measure its memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import ROOT, free_port


class AppProcess:
    """`python app.py` in its own process group, like a deployment's supervisor would run it."""

    def __init__(self, data_dir: Path, model_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {
            **os.environ,
            "PLAYGROUND_DATA_DIR": str(data_dir),
            "PLAYGROUND_MODEL": str(model_dir),
            "PLAYGROUND_PORT": str(self.port),
            "PLAYGROUND_HOST": "127.0.0.1",
        }
        self.log = (data_dir.parent / f"app-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, f"the app exited: {Path(self.log.name).read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(self.url, timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the app did not start")

    def peak_rss(self) -> int:
        """The process's high-water mark of resident memory (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()
