"""Decode speed of the app's generation path vs plain `model.generate` in fp32, measured in one run.

Same model, prompt, sampling settings, seed, token count and thread count on both sides; each side
is warmed up once, then timed `--repeats` times and the median is reported. The ratio is the
number that matters -- absolute tokens/s depend on the machine. On an x86 CPU the app decodes the
base model through its lean fp16 decoder (pipelines/engine/fast_decode.py; PLAYGROUND_FAST=0 turns it
off), so quality is measured too: greedy continuations of a fixed prompt set from the app's path
and from fp32 `generate`, compared token by token (`greedy_agreement`: the share of tokens before
the first divergence; `greedy_exact`: the share of prompts whose continuations are identical).
`app_exact_tokens_per_second` is the app's own loop with the fast decoder off (transformers in
fp32), which separates what the decoder gains from what the sampling loop costs.

When llama-cpp-python is installed (`make llamacpp`), the app's path is also timed on the
llama.cpp engine (`llamacpp_tokens_per_second`) beside llama-cpp-python's own sampling loop
(`Llama.generate`) on the same GGUF file, prompt tokens, settings and threads
(`llamacpp_direct_tokens_per_second`): the gap is what the app's own sampling, log-probabilities
and streaming cost on top of llama.cpp.

    python bench/generate_bench.py [--tokens 200] [--repeats 3] [--json] [--no-llamacpp]
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

import torch  # noqa: E402

from pipelines.engine import chat, generation, llamacpp_engine, models  # noqa: E402
from pipelines.engine.sampling import SamplingParams  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
AGREEMENT_PROMPTS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "List three uses of a paperclip.",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "Write a haiku about autumn.",
    "What is 12 times 7?",
    "Give one tip for learning to cook.",
    "Describe a cat to someone who has never seen one.",
    "What does a compiler do?",
    "Name a famous painting and its painter.",
    "How do plants drink water?",
]


def app_tokens_per_second(handle: models.ModelHandle, prompt_ids: list[int], params: SamplingParams) -> float:
    started = time.perf_counter()
    completion = generation.generate(handle, prompt_ids, params, ignore_eos=True)
    return len(completion.tokens) / (time.perf_counter() - started)


def transformers_tokens_per_second(handle: models.ModelHandle, prompt_ids: list[int], params: SamplingParams) -> float:
    inputs = torch.tensor([prompt_ids], device=handle.device)
    torch.manual_seed(params.seed or 0)
    started = time.perf_counter()
    with torch.inference_mode():
        out = handle.model.generate(
            inputs,
            attention_mask=torch.ones_like(inputs),
            do_sample=not params.greedy,
            temperature=params.temperature or None,
            top_p=params.top_p,
            top_k=params.top_k or None,
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=params.max_new_tokens,
            pad_token_id=handle.tokenizer.pad_token_id,
        )
    return (out.shape[1] - inputs.shape[1]) / (time.perf_counter() - started)


def llamacpp_direct_tokens_per_second(
    engine: llamacpp_engine.LlamaCppEngine, prompt_ids: list[int], params: SamplingParams
) -> float:
    """llama-cpp-python's own decode-and-sample loop, no app code in between."""
    llm = engine.llm
    with engine.lock:
        llm.reset()
        llm.set_seed(params.seed or 0)
        started = time.perf_counter()
        produced = 0
        for _ in llm.generate(
            prompt_ids,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k or 0,
            min_p=params.min_p or 0.0,
            repeat_penalty=params.repetition_penalty,
            reset=True,
        ):
            produced += 1
            if produced >= params.max_new_tokens:
                break
        seconds = time.perf_counter() - started
        llm.reset()
    return produced / seconds


def _chat_ids(handle: models.ModelHandle, text: str) -> list[int]:
    return chat.render(handle, [chat.Message("user", text)])[1]


def greedy_agreement(handle: models.ModelHandle, tokens: int = 32) -> dict[str, float]:
    """How often the app's (fast fp16 or llama.cpp) greedy decoding matches fp32 `generate`, token by token."""
    matched = total = exact = 0
    params = SamplingParams(temperature=0, max_new_tokens=tokens)
    for text in AGREEMENT_PROMPTS:
        ids = _chat_ids(handle, text)
        ours = generation.generate(handle, ids, params).completion_ids
        inputs = torch.tensor([ids], device=handle.device)
        with torch.inference_mode():
            out = handle.model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                do_sample=False,
                max_new_tokens=tokens,
                pad_token_id=handle.tokenizer.pad_token_id,
            )
        reference = out[0, len(ids) :].tolist()
        common = 0
        for a, b in zip(ours, reference, strict=False):
            if a != b:
                break
            common += 1
        length = max(len(ours), len(reference))
        matched, total, exact = matched + common, total + length, exact + (ours == reference)
    return {"greedy_agreement": round(matched / total, 3), "greedy_exact": round(exact / len(AGREEMENT_PROMPTS), 3)}


def measure_llamacpp(
    handle: models.ModelHandle, prompt_ids: list[int], params: SamplingParams, repeats: int
) -> dict[str, float]:
    """The app's path on the llama.cpp engine vs llama-cpp-python's own loop, and its greedy agreement with fp32."""
    previous = handle.engine
    engine = previous if isinstance(previous, llamacpp_engine.LlamaCppEngine) else None
    own = engine is None
    if own:
        gguf = llamacpp_engine.gguf_for(
            handle.source, models.bundled_gguf_path() if handle.name == models.BUNDLED_NAME else None
        )
        if gguf is None:
            return {"llamacpp": "skipped: no GGUF file for this model"}
        engine = llamacpp_engine.LlamaCppEngine(
            gguf, n_ctx=2048, threads=torch.get_num_threads(), n_vocab=handle.model.config.vocab_size
        )
        handle.engine = engine
    try:
        warm = SamplingParams(temperature=0.7, seed=0, max_new_tokens=8)
        app_tokens_per_second(handle, prompt_ids, warm)
        llamacpp_direct_tokens_per_second(engine, prompt_ids, warm)
        app, direct = [], []
        for _ in range(repeats):
            app.append(app_tokens_per_second(handle, prompt_ids, params))
            direct.append(llamacpp_direct_tokens_per_second(engine, prompt_ids, params))
        agreement = greedy_agreement(handle)
    finally:
        if own:
            handle.engine = previous
            engine.close()
    app_tps, direct_tps = statistics.median(app), statistics.median(direct)
    return {
        "llamacpp_tokens_per_second": round(app_tps, 2),
        "llamacpp_direct_tokens_per_second": round(direct_tps, 2),
        "llamacpp_vs_direct": round(app_tps / direct_tps, 3),
        "llamacpp_greedy_agreement": agreement["greedy_agreement"],
        "llamacpp_greedy_exact": agreement["greedy_exact"],
    }


def measure(handle: models.ModelHandle, tokens: int, repeats: int, llamacpp: bool = True) -> dict[str, float]:
    params = SamplingParams(temperature=0.7, top_p=0.9, seed=0, max_new_tokens=tokens)
    prompt_ids = _chat_ids(handle, PROMPT)
    warm = SamplingParams(temperature=0.7, seed=0, max_new_tokens=8)
    app_tokens_per_second(handle, prompt_ids, warm)
    transformers_tokens_per_second(handle, prompt_ids, warm)
    app, hf, exact = [], [], []
    decoder = handle.fast_decoder
    for _ in range(repeats):  # interleave so drift in machine load hits every side alike
        app.append(app_tokens_per_second(handle, prompt_ids, params))
        hf.append(transformers_tokens_per_second(handle, prompt_ids, params))
        if decoder is not None:
            handle.fast_decoder = None
            try:
                exact.append(app_tokens_per_second(handle, prompt_ids, params))
            finally:
                handle.fast_decoder = decoder
    app_tps, hf_tps = statistics.median(app), statistics.median(hf)
    result = {
        "app_tokens_per_second": round(app_tps, 2),
        "transformers_tokens_per_second": round(hf_tps, 2),
        "speedup_vs_transformers": round(app_tps / hf_tps, 3),
        "tokens": tokens,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "model": handle.name,
        "engine": handle.engine_name,
        "fast_path": "lean fp16 decoder" + (" (TorchScript)" if decoder.scripted else " (eager)")
        if decoder is not None
        else "off (fp32)",
        **greedy_agreement(handle),
    }
    if exact:
        result["app_exact_tokens_per_second"] = round(statistics.median(exact), 2)
    if llamacpp and llamacpp_engine.available():
        result.update(measure_llamacpp(handle, prompt_ids, params, repeats))
        if "llamacpp_tokens_per_second" in result:  # not when the model has no GGUF file
            result["llamacpp_speedup_vs_transformers"] = round(result["llamacpp_tokens_per_second"] / hf_tps, 3)
    elif llamacpp:
        result["llamacpp"] = f"skipped: llama-cpp-python is not installed ({llamacpp_engine.INSTALL_HINT})"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp engine even when installed")
    args = parser.parse_args(argv)
    handle = models.get_handle()
    result = measure(handle, args.tokens, args.repeats, llamacpp=not args.no_llamacpp)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"model {result['model']}, {args.tokens} sampled tokens, {result['threads']} threads, median of {args.repeats}"
        )
        print(f"  app generation path     {result['app_tokens_per_second']:8.2f} tokens/s")
        print(f"  transformers .generate  {result['transformers_tokens_per_second']:8.2f} tokens/s")
        print(
            f"  speedup                 {result['speedup_vs_transformers']:8.3f}x  (fast path: {result['fast_path']})"
        )
        if "app_exact_tokens_per_second" in result:
            print(
                f"  app path, fast off      {result['app_exact_tokens_per_second']:8.2f} tokens/s  (PLAYGROUND_FAST=0)"
            )
        print(
            f"  greedy agreement with fp32: {result['greedy_agreement']:.1%} of tokens, "
            f"{result['greedy_exact']:.0%} of {len(AGREEMENT_PROMPTS)} prompts identical"
        )
        if "llamacpp_tokens_per_second" in result:
            print(
                f"  app path on llama.cpp   {result['llamacpp_tokens_per_second']:8.2f} tokens/s "
                f"({result['llamacpp_speedup_vs_transformers']:.2f}x transformers)"
            )
            print(
                f"  llama-cpp-python direct {result['llamacpp_direct_tokens_per_second']:8.2f} tokens/s "
                f"(app path = {result['llamacpp_vs_direct']:.1%} of direct)"
            )
            print(
                f"  llama.cpp greedy agreement with fp32: {result['llamacpp_greedy_agreement']:.1%} of tokens, "
                f"{result['llamacpp_greedy_exact']:.0%} of prompts identical"
            )
        elif "llamacpp" in result:
            print(f"  llama.cpp engine: {result['llamacpp']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
