"""Cost of a preference item's 2-4 responses from one batched call, vs one response, in one run.

The Preferences tab generates every response of an item as rows of one batch (`generation.
stream_batch`): on a CPU, decoding is bound by reading the weights, and a batch of 2 reads them
once per step for both rows. Same prompt, settings and token count; rows differ only by seed.

    python bench/compare_bench.py [--tokens 64] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pipelines.engine import chat, generation, models  # noqa: E402
from pipelines.engine.chat import Message  # noqa: E402
from pipelines.engine.sampling import SamplingParams  # noqa: E402

PROMPT = "Give me three tips for a first job interview."


def seconds_for(handle: models.ModelHandle, ids: list[int], rows: int, tokens: int) -> float:
    params = [SamplingParams(temperature=0.8, seed=seed, max_new_tokens=tokens) for seed in range(rows)]
    started = time.perf_counter()
    generation.generate_batch(handle, [ids] * rows, params, ignore_eos=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    handle = models.get_handle()
    ids = chat.build_prompt(handle, [Message("user", PROMPT)], max_new_tokens=args.tokens).ids
    seconds_for(handle, ids, 2, 4)  # warm up
    times: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for _ in range(args.repeats):  # interleaved, so load drift hits every size alike
        for rows in times:
            times[rows].append(seconds_for(handle, ids, rows, args.tokens))
    median = {rows: statistics.median(values) for rows, values in times.items()}
    result = {
        "one_response_seconds": round(median[1], 3),
        "two_responses_seconds": round(median[2], 3),
        "four_responses_seconds": round(median[4], 3),
        "two_vs_one": round(median[2] / median[1], 3),
        "four_vs_one": round(median[4] / median[1], 3),
        "tokens": args.tokens,
        "model": handle.name,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.tokens} tokens per response, median of {args.repeats}: 1 response {median[1]:.2f} s, 2 responses "
            f"{median[2]:.2f} s ({result['two_vs_one']:.2f}x), 4 responses {median[4]:.2f} s ({result['four_vs_one']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
