"""A class where every student decodes with their own LoRA adapter: N students at once vs one alone.

In-process, on the served model (the bundled one unless PLAYGROUND_MODEL), through the app's own path
(`generation.generate` from N threads, as N page requests arrive): every request with an adapter joins
the scheduler's adapter lane, where rows with different LoRA adapters share each decode step through
PEFT's mixed-batch inference. The adapters are made here, each with its own random weights (r=8 on
every attention and MLP projection, the Fine-tune tab's default targets), and saved in the data
directory as a trained one would be; what they say does not matter for speed.

Reported, in one run and interleaved so this VM's drift hits every side alike:
- "adapters_speedup": N students with N different adapters, tokens/s in total, over one student alone
  (with an adapter) -- issue 41 asks for >= 3x at 16;
- "base_speedup": the same for N students without adapters (the lean decoder's lane), for comparison;
- "mixed_pair_seconds_over_adapter_alone": a base-vs-adapter comparison as one batched call, over the
  adapter row alone.

    python bench/adapters_bench.py [--students 16] [--tokens 32] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("PLAYGROUND_DATA_DIR", tempfile.mkdtemp(prefix="playground-adapters-bench-"))

import torch  # noqa: E402

from pipelines.engine import generation, models  # noqa: E402
from pipelines.engine.sampling import SamplingParams  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapters(handle: models.ModelHandle, n: int) -> list[str]:
    """`n` LoRA adapters of the served model in the data directory, each with its own random weights."""
    import copy

    from peft import LoraConfig, get_peft_model

    from pipelines import config
    from pipelines.engine import adapters

    root = adapters.adapters_dir(config.get_settings())
    base = copy.deepcopy(handle.base_model)
    names = []
    for i in range(n):
        torch.manual_seed(100 + i)
        peft_model = get_peft_model(
            copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False)
        )
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.02)
        name = f"student-{i + 1:02d}"
        out = root / name
        peft_model.save_pretrained(out)
        (out / "meta.json").write_text(json.dumps({"base_model": handle.name, "kind": "lora"}))
        names.append(name)
    return names


def prompt(i: int) -> str:
    return f"Student {i + 1} asks: explain in two sentences why the sky is blue. Answer:"


def at_once(handle: models.ModelHandle, adapters: list[str | None], tokens: int) -> tuple[float, int]:
    """Every student's request at the same moment, each in its own thread: (seconds, tokens made)."""
    made = [0] * len(adapters)
    ready = threading.Barrier(len(adapters) + 1)
    params = SamplingParams(temperature=0, max_new_tokens=tokens)

    def student(i: int) -> None:
        ready.wait()
        made[i] = len(generation.generate(handle, prompt(i), params, ignore_eos=True, adapter=adapters[i]).tokens)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(len(adapters))]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sum(made)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    handle = models.get_handle()
    handle.wait_fast_decoder(timeout=600)
    names = make_adapters(handle, args.students)
    alone_params = SamplingParams(temperature=0, max_new_tokens=args.tokens)
    generation.generate(handle, prompt(0), alone_params, ignore_eos=True, adapter=names[0])  # warm up
    at_once(handle, list(names), 4)
    ratios: dict[str, list[float]] = {"adapters": [], "base": [], "pair": []}
    figures: dict[str, list[float]] = {
        "adapter_alone": [],
        "adapters_together": [],
        "base_alone": [],
        "base_together": [],
    }
    for _ in range(max(1, args.rounds)):
        seconds, made = at_once(handle, [names[0]], args.tokens)
        alone = made / seconds
        seconds, made = at_once(handle, list(names), args.tokens)
        together = made / seconds
        seconds, made = at_once(handle, [None], args.tokens)
        base_alone = made / seconds
        seconds, made = at_once(handle, [None] * args.students, args.tokens)
        base_together = made / seconds
        started = time.perf_counter()
        generation.generate_batch(
            handle, [prompt(0)] * 2, [alone_params] * 2, ignore_eos=True, adapter=[None, names[0]]
        )
        pair = time.perf_counter() - started
        ratios["adapters"].append(together / alone)
        ratios["base"].append(base_together / base_alone)
        ratios["pair"].append(pair / (args.tokens / alone))
        for key, value in zip(figures, (alone, together, base_alone, base_together), strict=True):
            figures[key].append(value)
    result = {
        "students": args.students,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "adapters_speedup": round(statistics.median(ratios["adapters"]), 2),
        "adapters_speedup_per_round": [round(r, 2) for r in ratios["adapters"]],
        "adapter_alone_tokens_per_second": round(statistics.median(figures["adapter_alone"]), 2),
        "adapters_together_tokens_per_second": round(statistics.median(figures["adapters_together"]), 2),
        "base_speedup": round(statistics.median(ratios["base"]), 2),
        "base_alone_tokens_per_second": round(statistics.median(figures["base_alone"]), 2),
        "base_together_tokens_per_second": round(statistics.median(figures["base_together"]), 2),
        "mixed_pair_seconds_over_adapter_alone": round(statistics.median(ratios["pair"]), 2),
        "model": handle.name,
        "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>40}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
