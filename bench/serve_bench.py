"""One client alone vs N clients at once on a launched app: aggregate tokens/s, time to first token, latency.

Starts `python app.py` (the bundled model unless --model) on loopback with a fresh data directory,
then, in the same run: each of the N prompts alone, one after another (the baseline and the
reference text), and all N at once. Every request is a greedy `/generate` of --tokens new tokens
through gradio_client, as a script would call it; the time to first token is when the first
streamed update with text arrives. Greedy agreement compares each concurrent answer with the same
prompt answered alone, token by token.

    python bench/serve_bench.py [--clients 16] [--tokens 32] [--model DIR] [--json]

Prints {"single_tokens_per_second", "aggregate_tokens_per_second", "speedup", "ttft_p50_s",
"ttft_p95_s", "latency_p50_s", "latency_p95_s"} plus the clients, the tokens, the single-client
latency and the greedy agreement.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import launch, percentile  # noqa: E402  (the same launcher and percentiles)

SUBJECTS = ("a lighthouse", "a bakery", "a river", "a robot", "a garden", "a train", "a violin", "a mountain")


def prompts(n: int) -> list[str]:
    """Different prompts of about the same length, so no request is a cache hit of another."""
    return [
        f"Write a short story about {SUBJECTS[i % len(SUBJECTS)]} number {i + 1}. Once upon a time" for i in range(n)
    ]


def generate(url: str, prompt: str, tokens: int) -> dict:
    """One greedy generation, streamed: time to first text, total time, the tokens made."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    started = time.perf_counter()
    job = client.submit(prompt=prompt, temperature=0.0, max_new_tokens=tokens, seed=0, api_name="/generate")
    first = None
    while not job.done():
        outputs = job.outputs()
        if first is None and outputs and outputs[-1][0]:
            first = time.perf_counter() - started
        time.sleep(0.01)
    text, stats = job.result()
    total = time.perf_counter() - started
    if first is None:
        first = total
    made = re.search(r"\*\*(\d+)\*\* tokens", stats)
    return {"ttft": first, "latency": total, "tokens": int(made.group(1)) if made else 0, "text": text}


def warm_up(url: str, tokens: int, tries: int = 8) -> None:
    """Until two generations in a row take about as long: the first requests pay for lazy set-up
    (and, on the CPU, for the fast decoder being built in the background), which neither side should."""
    last = None
    for _ in range(tries):
        took = generate(url, "Warm up: count from one to twenty.", tokens)["latency"]
        if last is not None and abs(took - last) <= 0.15 * last:
            return
        last = took


def agreement(tokenizer, alone: list[str], together: list[str]) -> float:
    """Share of tokens equal at the same position, the texts tokenised by the model's own tokenizer
    (the shorter answer's missing tokens count as different)."""
    same = total = 0
    for a, b in zip(alone, together):
        x, y = tokenizer.encode(a, add_special_tokens=False), tokenizer.encode(b, add_special_tokens=False)
        total += max(len(x), len(y))
        same += sum(p == q for p, q in zip(x, y))
    return same / total if total else 1.0


def tokenizer_of(data_dir: Path, model: str | None):
    """The served model's tokenizer: --model, or the bundled model the app converted into the data directory."""
    from transformers import AutoTokenizer

    if model:
        return AutoTokenizer.from_pretrained(model)
    found = next(p.parent for p in sorted((data_dir / "models").rglob("tokenizer.json")))
    return AutoTokenizer.from_pretrained(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--model", help="PLAYGROUND_MODEL for the launched app (default: the bundled model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="playground-serve-"))
    process, url = launch(data_dir, args.model)
    try:
        texts = prompts(args.clients)
        warm_up(url, args.tokens)
        alone = [generate(url, p, args.tokens) for p in texts]
        results: list[dict | None] = [None] * args.clients
        errors: list[str] = []

        def client(index: int) -> None:
            try:
                results[index] = generate(url, texts[index], args.tokens)
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(error).__name__}: {error}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=60)

    done = [r for r in results if r is not None]
    single_tps = sum(r["tokens"] for r in alone) / sum(r["latency"] for r in alone)
    aggregate_tps = sum(r["tokens"] for r in done) / wall
    report = {
        "clients": args.clients,
        "tokens": args.tokens,
        "single_tokens_per_second": round(single_tps, 2),
        "aggregate_tokens_per_second": round(aggregate_tps, 2),
        "speedup": round(aggregate_tps / single_tps, 2),
        "ttft_p50_s": round(percentile([r["ttft"] for r in done], 50), 3),
        "ttft_p95_s": round(percentile([r["ttft"] for r in done], 95), 3),
        "latency_p50_s": round(percentile([r["latency"] for r in done], 50), 3),
        "latency_p95_s": round(percentile([r["latency"] for r in done], 95), 3),
        "single_latency_p50_s": round(percentile([r["latency"] for r in alone], 50), 3),
        "single_ttft_p50_s": round(percentile([r["ttft"] for r in alone], 50), 3),
        "greedy_token_agreement": round(
            agreement(
                tokenizer_of(data_dir, args.model),
                [a["text"] for a, r in zip(alone, results) if r],
                [r["text"] for r in done],
            ),
            4,
        ),
        "errors": len(errors),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>30}: {value}")
        for error in errors[:5]:
            print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
