"""N concurrent clients for T seconds against a launched app: generation, chat and preference votes, mixed.

Starts `python app.py` on loopback with a fresh data directory holding pre-made preference items
(unless --url points at a running app), then every client loops: a short generation, a chat
turn, or a vote on the next item it has not voted on, each through gradio_client as a script
would. Prints requests, errors and p50/p95 latency per endpoint, and the labels acknowledged vs
the labels the database holds for this run (goal: 0 errors, 0 lost, 0 duplicated).

    python bench/load_test.py [--clients 20] [--seconds 120] [--max-new-tokens 16] [--model DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MIX = (("generate", 0.35), ("chat", 0.25), ("vote", 0.40))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(data_dir: Path, model: str | None, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        **(extra_env or {}),
        "PLAYGROUND_DATA_DIR": str(data_dir),
        "PLAYGROUND_PORT": str(port),
        "PLAYGROUND_HOST": "127.0.0.1",
    }
    if model:
        env["PLAYGROUND_MODEL"] = model
    log = (data_dir / "app.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the app exited; see {data_dir / 'app.log'}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return process, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the app did not start in 10 minutes")


def make_items(n: int) -> list[str]:
    from pipelines.labels import preferences
    from pipelines.store import db

    ids = [
        preferences.create_item(
            [{"role": "user", "content": f"Load-test question {i}?"}],
            [preferences.ResponseDraft(f"first answer {i}"), preferences.ResponseDraft(f"second answer {i}")],
            origin="load-test",
        ).id
        for i in range(n)
    ]
    db.dispose_all()
    return ids


class Client:
    """One simulated user: its own gradio_client session, its own annotator name."""

    def __init__(
        self, number: int, url: str, items: list[str], max_new_tokens: int, deadline: float, stats: Stats
    ) -> None:
        from gradio_client import Client as GradioClient

        self.name = f"load-{number:02d}"
        self.client = GradioClient(url, verbose=False)
        self.items = list(items)
        random.Random(number).shuffle(self.items)
        self.rng = random.Random(1000 + number)
        self.max_new_tokens = max_new_tokens
        self.deadline = deadline
        self.stats = stats

    def run(self) -> None:
        names, weights = zip(*MIX, strict=False)
        while time.time() < self.deadline:
            action = self.rng.choices(names, weights)[0]
            if action == "vote" and not self.items:
                action = "generate"
            started = time.perf_counter()
            try:
                if action == "generate":
                    self.client.predict(
                        prompt=f"Write one sentence about the number {self.rng.randint(1, 999)}.",
                        max_new_tokens=self.max_new_tokens,
                        api_name="/generate",
                    )
                elif action == "chat":
                    self.client.predict(
                        message="Say hello in three words.", max_new_tokens=self.max_new_tokens, api_name="/chat"
                    )
                else:
                    item = self.items.pop()
                    result = self.client.predict(
                        item_id=item, choice=self.rng.choice("AB"), annotator=self.name, api_name="/vote"
                    )
                    if result.get("created"):
                        self.stats.acknowledged(item, self.name)
                self.stats.record(action, time.perf_counter() - started, None)
            except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                self.stats.record(action, time.perf_counter() - started, f"{type(error).__name__}: {str(error)[:160]}")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.acks: list[tuple[str, str]] = []

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            (self.errors[endpoint] if error else self.latency[endpoint]).append(error or seconds)  # type: ignore[arg-type]

    def acknowledged(self, item: str, annotator: str) -> None:
        with self.lock:
            self.acks.append((item, annotator))


def stored_labels(data_dir: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(data_dir / "playground.db") as connection:
        return list(connection.execute("SELECT item_id, annotator FROM pref_labels WHERE annotator LIKE 'load-%'"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--items", type=int, default=2000, help="preference items made before the run")
    parser.add_argument("--model", help="PLAYGROUND_MODEL for the launched app (default: the bundled model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="playground-load-"))
    os.environ["PLAYGROUND_DATA_DIR"] = str(data_dir)
    items = make_items(args.items)
    process, url = launch(data_dir, args.model)
    try:
        stats = Stats()
        deadline = time.time() + args.seconds
        clients = [Client(n, url, items, args.max_new_tokens, deadline, stats) for n in range(args.clients)]
        threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=args.seconds + 600)
        alive = process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=60)
    stored = stored_labels(data_dir)
    acked = set(stats.acks)
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "app_survived": alive,
        "requests": sum(len(v) for v in stats.latency.values()) + sum(len(v) for v in stats.errors.values()),
        "errors": sum(len(v) for v in stats.errors.values()),
        "endpoints": {
            name: {
                "requests": len(stats.latency[name]) + len(stats.errors[name]),
                "errors": len(stats.errors[name]),
                "p50_s": round(percentile(stats.latency[name], 50), 3),
                "p95_s": round(percentile(stats.latency[name], 95), 3),
                "first_error": stats.errors[name][0] if stats.errors[name] else None,
            }
            for name, _ in MIX
        },
        "labels_acknowledged": len(stats.acks),
        "labels_stored": len(stored),
        "labels_lost": len(acked - set(stored)),
        "labels_duplicated": len(stored) - len(set(stored)) + (len(stats.acks) - len(acked)),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.clients} clients for {args.seconds:.0f} s: {result['requests']} requests, {result['errors']} errors, "
            f"app {'still serving' if alive else 'DIED'}"
        )
        print("| endpoint | requests | errors | p50 s | p95 s |\n|---|---|---|---|---|")
        for name, row in result["endpoints"].items():
            print(f"| {name} | {row['requests']} | {row['errors']} | {row['p50_s']} | {row['p95_s']} |")
            if row["first_error"]:
                print(f"  first error: {row['first_error']}")
        print(
            f"labels: {result['labels_acknowledged']} acknowledged, {result['labels_stored']} stored, "
            f"{result['labels_lost']} lost, {result['labels_duplicated']} duplicated"
        )
    return (
        0 if result["errors"] == 0 and result["labels_lost"] == 0 and result["labels_duplicated"] == 0 and alive else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
