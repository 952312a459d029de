"""How long the Inside-the-model panels take on the bundled model, against one plain forward pass.

A prompt of `--tokens` tokens (64 by default: the issue's figure) goes through, each warmed up once
and then timed `--repeats` times (median reported):
- `forward_s`: one forward pass of the fp32 model with SDPA (the baseline, measured in this run);
- `attention_s`: the attention panel (the eager kernel for one pass, weights of every head kept);
- `lens_s`: the logit lens (every block's residual stream through the final norm and the head);
- `perplexity_s`: the likelihood panel on the same text;
- `tuned_lens_s`: the lens with the shipped tuned lens beside the logit lens;
- issue 40's panels: `heads_scan_s` (all heads scored, the cache bypassed; the issue's goal is 30 s),
  `heads_cached_s`, `patch_s` (the residual-stream grid of the panel's default 9-token prompts: one
  pass per layer) and `steer_s` (the vector from the 120 bundled reviews, then 40 tokens steered
  and unsteered in one batch).
The ratios to `forward_s` are what carries from machine to machine.

    python bench/inside_bench.py [--tokens 64] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from pipelines import inside  # noqa: E402
from pipelines.engine import models  # noqa: E402
from pipelines.inside import heads, patching, steering, tuned_lens  # noqa: E402

TEXT = (
    "The lighthouse keeper climbed the narrow stairs every evening, polished the great lens, and lit the lamp "
    "so that ships far out at sea could find their way home through the fog and the rain of the long winter nights."
)


def timed(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def prompt_of(handle: models.ModelHandle, tokens: int) -> str:
    """Text that tokenizes to exactly `tokens` tokens (decoding a cut can merge two at the seam)."""
    ids: list[int] = []
    while len(ids) < 2 * tokens:
        ids += handle.tokenizer(TEXT + " ", add_special_tokens=False)["input_ids"]
    cut = tokens
    while True:
        text = handle.tokenizer.decode(ids[:cut])
        if len(handle.tokenizer(text, add_special_tokens=False)["input_ids"]) >= tokens:
            return text
        cut += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    handle = models.get_handle()
    prompt = prompt_of(handle, args.tokens)
    ids = handle.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    layers = inside.shape(handle)["layers"]

    def forward() -> None:
        with handle.locked():
            handle.forward(None, input_ids=torch.tensor([ids]))

    forward_s = timed(forward, args.repeats)
    attention_s = timed(lambda: inside.attention(handle, prompt, layer=layers // 2, head=None), args.repeats)
    lens_s = timed(lambda: inside.lens(handle, prompt), args.repeats)
    perplexity_s = timed(lambda: inside.perplexity(handle, prompt), args.repeats)
    translators = tuned_lens.bundled_for(handle)
    tuned_lens_s = timed(lambda: inside.lens(handle, prompt, translators=translators), args.repeats)
    heads_scan_s = timed(lambda: heads.scan(handle, refresh=True), args.repeats)
    heads_cached_s = timed(lambda: heads.scan(handle), args.repeats)
    clean, corrupt = "The Eiffel Tower is in the city of", "The Colosseum is in the city of"
    patch_s = timed(lambda: patching.patch(handle, clean, corrupt, target=" Paris"), args.repeats)
    positive, negative = steering.sentiment_sets()
    spec = steering.SteerSpec()

    def steer() -> None:
        found = steering.vector(handle, positive, negative, layer=spec.layer)
        steering.steer(handle, "I watched the movie yesterday and", found, spec)

    steer_s = timed(steer, args.repeats)
    report = {
        "model": handle.name,
        "tokens": len(ids),
        "threads": torch.get_num_threads(),
        "forward_s": round(forward_s, 4),
        "attention_s": round(attention_s, 4),
        "lens_s": round(lens_s, 4),
        "perplexity_s": round(perplexity_s, 4),
        "tuned_lens_s": round(tuned_lens_s, 4),
        "heads_scan_s": round(heads_scan_s, 4),
        "heads_cached_s": round(heads_cached_s, 4),
        "patch_s": round(patch_s, 4),
        "steer_s": round(steer_s, 4),
        "attention_over_forward": round(attention_s / forward_s, 2),
        "lens_over_forward": round(lens_s / forward_s, 2),
        "heads_scan_over_forward": round(heads_scan_s / forward_s, 2),
        "patch_over_forward": round(patch_s / forward_s, 2),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
