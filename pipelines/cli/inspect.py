"""`python -m pipelines inspect tokens|score|perplexity|attention|lens|architecture|heads|patch|steer`: inside the
model."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

from pipelines.cli.common import (
    UsageError,
    add_capsule_flag,
    add_spec_flags,
    emit_json,
    keep_capsule,
    needs_action,
    quiet_stdout,
    spec_args,
)


def register(subparsers: argparse._SubParsersAction, help_text: str) -> None:
    parser = subparsers.add_parser("inspect", help=help_text)
    views = parser.add_subparsers(dest="view", metavar="VIEW", parser_class=type(parser))

    def view(name: str, help_: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = views.add_parser(name, help=help_)
        sub.add_argument("--json", action="store_true", help="print one JSON document")
        add_capsule_flag(sub)
        sub.set_defaults(handler=handler)
        return sub

    def with_adapter(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--adapter", default=None, metavar="NAME", help="a LoRA adapter (default: the base model)")
        return sub

    tokens = view("tokens", "the text's tokens: ids and the tokenizer's pieces", run_tokens)
    tokens.add_argument("--text", required=True)
    tokens.add_argument("--as-chat", action="store_true", help="wrapped in the chat template (its special tokens)")
    perplexity = with_adapter(
        view("perplexity", "per-token log-probabilities, mean loss and perplexity", run_perplexity)
    )
    perplexity.add_argument("--text", required=True)
    score = with_adapter(view("score", "log P(continuation | prompt) and the rank of its first token", run_score))
    score.add_argument("--prompt", required=True)
    score.add_argument("--continuation", required=True)
    score.add_argument("--versus", default=None, metavar="TEXT", help="a second continuation to compare with")
    attention = with_adapter(view("attention", "one layer's attention weights over the prompt", run_attention))
    attention.add_argument("--prompt", required=True)
    attention.add_argument("--layer", type=int, required=True, help="0 = the first block")
    attention.add_argument("--head", type=int, default=None, help="one head (default: the mean over heads)")
    lens = with_adapter(
        view("lens", "the logit (and tuned) lens: each layer's top next token per position, its KL", run_lens)
    )
    lens.add_argument("--prompt", required=True)
    lens.add_argument(
        "--tuned", action="store_true", help='also through the shipped tuned lens (under "tuned" in the JSON)'
    )
    architecture = view("architecture", "modules, shapes, parameter counts and the KV cache's size", run_architecture)
    architecture.add_argument("--context", type=int, default=None, help="tokens of context for the KV-cache size")
    _register_causal(view, with_adapter)
    parser.set_defaults(
        handler=needs_action(
            "inspect", "tokens, score, perplexity, attention, lens, architecture, heads, patch or steer"
        )
    )


def _register_causal(view: Callable[..., argparse.ArgumentParser], with_adapter: Callable[..., Any]) -> None:
    """The views that test a cause: heads that do a job, activation patching, steering."""
    from pipelines.inside.patching import PLACES
    from pipelines.inside.steering import SteerSpec

    heads = with_adapter(view("heads", "every head's induction, previous-token and sink score (cached)", run_heads))
    heads.add_argument("--refresh", action="store_true", help="scan again even when these weights were scanned")
    heads.add_argument("--top", type=int, default=5, metavar="N", help="heads listed per score in the text output")
    patch = with_adapter(
        view("patch", "activation patching: the clean run's activations written into the corrupted run", run_patch)
    )
    patch.add_argument("--clean", required=True, metavar="TEXT", help="the prompt whose answer is the target")
    patch.add_argument("--corrupt", required=True, metavar="TEXT", help="the same number of tokens, one fact changed")
    patch.add_argument("--target", required=True, metavar="TOKEN", help="the clean answer, one token (e.g. ' Paris')")
    patch.add_argument(
        "--foil", default=None, metavar="TOKEN", help="the other answer (default: the corrupted run's top token)"
    )
    patch.add_argument(
        "--place",
        dest="places",
        action="append",
        choices=PLACES,
        default=None,
        help="what is patched, repeatable (default: residual; attention and mlp each add a pass per layer)",
    )
    steer = with_adapter(
        view("steer", "add a steering vector (two prompt sets' mean difference) while writing", run_steer)
    )
    steer.add_argument(
        "--positive", required=True, metavar="FILE", help="prompts to steer towards: one per line or JSONL"
    )
    steer.add_argument("--negative", required=True, metavar="FILE", help="prompts to steer away from, same format")
    steer.add_argument("--prompt", required=True, metavar="TEXT", help="the text both continuations start from")
    add_spec_flags(steer, SteerSpec)


def _computed(args: argparse.Namespace, compute: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    from pipelines import inside
    from pipelines.engine import adapters, models

    with quiet_stdout(args.json):
        handle = models.get_handle()
        try:
            return compute(handle)
        except adapters.AdapterError as error:
            raise UsageError(f"--adapter: {error}") from error
        except inside.InsideError as error:
            raise UsageError(str(error)) from error


def _emit(args: argparse.Namespace, report: dict[str, Any], lines: list[str]) -> int:
    keep_capsule(args, report)
    if args.json:
        emit_json(report)
    else:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    from pipelines import inside
    from pipelines.engine import models

    with quiet_stdout(args.json):
        tokenizer = models.get_handle().tokenizer
    report = inside.tokens(tokenizer, args.text, as_chat=args.as_chat)
    pieces = " | ".join(f"{t['piece']} ({t['id']})" for t in report["tokens"])
    return _emit(args, report, [pieces, f"{report['characters']} characters, {report['count']} tokens"])


def run_perplexity(args: argparse.Namespace) -> int:
    from pipelines import inside

    report = _computed(args, lambda h: inside.perplexity(h, args.text, adapter=args.adapter))
    lines = [f"{t['piece']!r}: {t['logprob']:.3f}" for t in report["tokens"] if t["logprob"] is not None]
    lines.append(f"mean loss {report['mean_loss']:.4f}, perplexity {report['perplexity']:.2f}")
    return _emit(args, report, lines)


def run_score(args: argparse.Namespace) -> int:
    from pipelines import inside

    report = _computed(args, lambda h: inside.score(h, args.prompt, args.continuation, adapter=args.adapter))
    lines = [f"log P = {report['logprob']:.4f} (p = {report['prob']:.3g}), first token's rank {report['rank']}"]
    if args.versus is not None:
        other = _computed(args, lambda h: inside.score(h, args.prompt, args.versus, adapter=args.adapter))
        report["versus"] = other
        report["ratio"] = math.exp(report["logprob"] - other["logprob"])
        lines.append(f"versus {args.versus!r}: log P = {other['logprob']:.4f}; {report['ratio']:.3g}x as likely")
    return _emit(args, report, lines)


def run_attention(args: argparse.Namespace) -> int:
    from pipelines import inside

    report = _computed(
        args, lambda h: inside.attention(h, args.prompt, layer=args.layer, head=args.head, adapter=args.adapter)
    )
    pieces = [t["piece"] for t in report["tokens"]]
    lines = [
        f"{piece:>12} " + " ".join(f"{w:.2f}" for w in row)
        for piece, row in zip(pieces, report["weights"], strict=False)
    ]
    return _emit(args, report, lines)


def run_lens(args: argparse.Namespace) -> int:
    from pipelines import inside
    from pipelines.inside import tuned_lens

    report = _computed(
        args,
        lambda h: inside.lens(
            h, args.prompt, adapter=args.adapter, translators=tuned_lens.bundled_for(h) if args.tuned else None
        ),
    )
    lines = []
    for name, view in [("logit lens", report), *([("tuned lens", report["tuned"])] if args.tuned else [])]:
        lines.append(f"{name} (KL to the final distribution per layer, then each position's top token):")
        lines += [
            f"layer {n:>2} KL {kl:6.2f}: " + " ".join(f"{cell['token']}({cell['prob']:.2f})" for cell in row)
            for n, (row, kl) in enumerate(zip(view["layers"], view["kl"], strict=True))
        ]
    return _emit(args, report, lines)


def run_architecture(args: argparse.Namespace) -> int:
    from pipelines import inside

    report = _computed(args, lambda h: inside.architecture(h, context=args.context))
    kv = report["kv_cache"]
    lines = [f"{report['model']}: {report['total_params']:,} parameters"]
    lines += [f"  {name}: {part['params']:,} ({part['share']:.1%})" for name, part in report["parts"].items()]
    lines.append(
        f"KV cache: {kv['bytes_per_token']:,} bytes per token ({kv['kv_heads']} key-value heads for {kv['heads']} "
        f"query heads: {kv['gqa_saving']:.0f}x smaller); {kv['bytes_for_context'] / 2**20:.1f} MiB for {kv['context']} tokens"
    )
    return _emit(args, report, lines)


def run_heads(args: argparse.Namespace) -> int:
    from pipelines.inside import heads

    report = _computed(args, lambda h: heads.scan(h, adapter=args.adapter, refresh=args.refresh))
    took = "cached" if report["cached"] else f"scanned in {report['seconds']:.1f} s"
    lines = [f"{report['layers']} layers x {report['heads_per_layer']} heads ({took})"]
    for score in heads.SCORES:
        best = ", ".join(
            f"L{h['layer']}.H{h['head']} {h[score]:.2f}" for h in heads.top(report, score, max(1, args.top))
        )
        lines.append(f"{score}: {best}")
    return _emit(args, report, lines)


def run_patch(args: argparse.Namespace) -> int:
    from pipelines.inside import patching

    places = tuple(dict.fromkeys(args.places or ["residual"]))
    report = _computed(
        args,
        lambda h: patching.patch(
            h, args.clean, args.corrupt, target=args.target, foil=args.foil, places=places, adapter=args.adapter
        ),
    )
    pieces = [t["piece"] for t in report["positions"]]
    lines = [
        f"logit({report['target']['token']}) - logit({report['foil']['token']}): clean {report['clean_logit_diff']:.2f},"
        f" corrupt {report['corrupt_logit_diff']:.2f}; recovered fraction per layer and position:"
    ]
    for place in places:
        lines.append(f"{place}:   " + " ".join(f"{p[:8]:>8}" for p in pieces))
        lines += [
            f"  layer {n:>2} " + " ".join(f"{v:8.2f}" for v in row) for n, row in enumerate(report["recovered"][place])
        ]
    return _emit(args, report, lines)


def run_steer(args: argparse.Namespace) -> int:
    from pipelines.inside import steering

    positive = steering.prompts_from_file(args.positive, "--positive")
    negative = steering.prompts_from_file(args.negative, "--negative")
    spec = steering.SteerSpec(**spec_args(args, steering.SteerSpec))

    def compute(handle: Any) -> dict[str, Any]:
        found = steering.vector(handle, positive, negative, layer=spec.layer, adapter=args.adapter)
        return steering.steer(handle, args.prompt, found, spec, adapter=args.adapter)

    report = _computed(args, compute)
    lines = [
        f"layer {report['layer']}, strength {report['strength']} (vector norm {report['vector_norm']:.2f}; the stream's"
        f" {report['residual_norm']:.1f}), seed {report['seed']}",
        f"steered:   {args.prompt}{report['steered']}",
        f"unsteered: {args.prompt}{report['unsteered']}",
    ]
    return _emit(args, report, lines)
