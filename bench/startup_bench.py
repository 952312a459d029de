"""Time from process start to an app that serves, on a warm cache and (optionally) a cold one.

Two moments per start, both from process start:
- ready to serve: `/` answers (the UI loads; labelling, datasets and RAG indexes work);
- first generation: a one-token `/generate` call through the API has returned, which needs the
  weights (they load in the background while the server starts, and model calls wait for them).

Warm: the converted model already sits in the data directory (every start after the first).
Cold: an empty data directory, so the bundled GGUF is dequantised and saved first (the first
start on a machine). Each start is `python app.py` in a fresh process.

    python bench/startup_bench.py [--repeats 2] [--cold] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_seconds(data_dir: str, timeout: float = 600) -> tuple[float, float]:
    """(seconds until `/` answers, seconds until the first generated token has come back)."""
    from gradio_client import Client

    port = free_port()
    env = {
        **os.environ,
        "PLAYGROUND_DATA_DIR": data_dir,
        "PLAYGROUND_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with status {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the app did not answer in time")
        serving = time.perf_counter() - started
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            prompt="Hello", max_new_tokens=1, temperature=0, api_name="/generate"
        )
        return serving, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="also time a first start that converts the GGUF")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from pipelines import config
    from pipelines.engine import models

    data_dir = str(config.get_settings().data_dir)
    models.bundled_model_dir(
        config.get_settings()
    ) if models.bundled_gguf_path() else None  # make sure the cache is warm
    start_seconds(data_dir)  # the OS file cache, like any second start
    warm = [start_seconds(data_dir) for _ in range(args.repeats)]
    result = {
        "warm_start_seconds": round(statistics.median(s for s, _ in warm), 2),
        "warm_first_generation_seconds": round(statistics.median(g for _, g in warm), 2),
        "repeats": args.repeats,
    }
    if args.cold:
        with tempfile.TemporaryDirectory() as empty:
            serving, generated = start_seconds(empty)
        result["cold_start_seconds"] = round(serving, 2)
        result["cold_first_generation_seconds"] = round(generated, 2)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"warm start (converted model cached), median of {args.repeats}: serving in "
            f"{result['warm_start_seconds']:.1f} s, first generated token at {result['warm_first_generation_seconds']:.1f} s"
        )
        if "cold_start_seconds" in result:
            print(
                f"first start (GGUF conversion): serving in {result['cold_start_seconds']:.1f} s, "
                f"first generated token at {result['cold_first_generation_seconds']:.1f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
