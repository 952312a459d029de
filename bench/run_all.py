"""Run every benchmark under bench/ with --json and print one table of their figures.

Each benchmark measures its own baseline in the same run, so every ratio here is like for like.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "generate_bench.py",
    "compare_bench.py",
    "startup_bench.py",
    "finetune_bench.py",
    "memory_bench.py",
    "rag_bench.py",
    "serve_bench.py",
    "adapters_bench.py",
    "inside_bench.py",
    "load_test.py",
]


def main() -> int:
    rows: list[tuple[str, str, str]] = []
    failed = False
    for name in BENCHES:
        script = HERE / name
        if not script.exists():
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True)
        if result.returncode != 0:
            failed = True
            rows.append((name, "error", result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "?"))
            continue
        for key, value in json.loads(result.stdout.strip().splitlines()[-1]).items():
            rows.append((name, key, str(value)))
    width = max((len(r[1]) for r in rows), default=10)
    print(f"| benchmark | {'figure'.ljust(width)} | value |")
    print(f"|---|{'-' * (width + 2)}|---|")
    for bench, key, value in rows:
        print(f"| {bench} | {key.ljust(width)} | {value} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
