"""One client alone vs N clients at once on a launched app: aggregate tokens/s, time to first token, latency.

Starts `python app.py` (the bundled model unless --model) on loopback with a fresh data directory,
then, in the same run: each of the N prompts alone, one after another (the baseline and the
reference text), and all N at once (every client connects first; the clock starts when the N
requests go out together). Every request is a greedy `/generate` of --tokens new tokens through
Gradio's queue protocol from an open session (see `Session`); the time to first token is when
the first streamed update with text arrives. Greedy agreement compares each concurrent answer with the same
prompt answered alone, token by token.

    python bench/serve_bench.py [--clients 16] [--tokens 32] [--rounds 3] [--baseline] [--model DIR] [--json]
                                [--shared-prefix TOKENS [--prefix-baseline]]

Prints {"single_tokens_per_second", "aggregate_tokens_per_second", "speedup", "ttft_p50_s",
"ttft_p95_s", "latency_p50_s", "latency_p95_s"} plus the clients, the tokens, the single-client
latency and the greedy agreement, from the round with the median speedup. With --baseline, a second
app with PLAYGROUND_BATCHING=0 is measured in the same rounds: "unbatched" (its figures) and
"single_vs_unbatched" (one client alone, batched over unbatched; the scheduler must not slow it).

With --shared-prefix TOKENS every prompt starts with the same text of that many tokens (a lesson's or
workshop's system prompt), and with --prefix-baseline a second app with PLAYGROUND_PREFIX_CACHE_MB=0 is
measured in the same rounds: "no_prefix_cache" (its figures) and "ttft_p50_no_prefix_cache_over_cached"
(how many times longer the N clients wait for their first token when every request reads the shared text
again). The prompts answered alone come first in every round, so the clients find the shared text already
read, as they would after the first request of a class.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import launch, percentile  # noqa: E402  (the same launcher and percentiles)

SUBJECTS = ("a lighthouse", "a bakery", "a river", "a robot", "a garden", "a train", "a violin", "a mountain")


def prompts(n: int, shared: str = "") -> list[str]:
    """Different prompts of about the same length after `shared`, so no request is another's whole prompt."""
    return [
        f"{shared}Write a short story about {SUBJECTS[i % len(SUBJECTS)]} number {i + 1}. Once upon a time"
        for i in range(n)
    ]


PREAMBLE = (
    "You are the teaching assistant of a workshop on small language models. Answer in plain words, one idea "
    "at a time, and say when a question goes beyond what the lecture covered. The lecture covered tokens, "
    "embeddings, attention, sampling with temperature, top-k and top-p, fine-tuning with LoRA adapters, "
    "preference labels, reward models and retrieval with citations. "
)


def shared_text(tokenizer, tokens: int) -> str:
    """A system-prompt-like text of exactly `tokens` tokens (the preamble repeated, then cut), ending in a
    blank line so that what follows it does not change how it is split into tokens."""
    if tokens <= 0:
        return ""
    ids = tokenizer.encode(PREAMBLE * (tokens // 40 + 2), add_special_tokens=False)[:tokens]
    return tokenizer.decode(ids).rstrip() + "\n\n"


class Session:
    """One open page of the app, speaking Gradio's queue protocol (POST queue/join, SSE queue/data).

    Not gradio_client: the clients run on the server's own two cores here, and gradio_client
    spends ~0.1 s of CPU per call (an event loop and TLS context per request), which would be
    charged to the server. A browser's page is one session whose state Gradio builds when the
    page loads (~50 ms of the server's event loop, a copy of every component's config), so each
    session is opened with one request before anything is timed.
    """

    def __init__(self, url: str, endpoint: str = "generate") -> None:
        import httpx

        self.api = url.rstrip("/") + "/gradio_api"
        self.http = httpx.Client(timeout=600)
        self.session_hash = uuid.uuid4().hex[:12]
        config = self.http.get(url.rstrip("/") + "/config").json()
        dependency = next(d for d in config["dependencies"] if d.get("api_name") == endpoint)
        self.fn_index = dependency["id"]
        kinds = {c["id"]: c.get("type") for c in config["components"]}
        info = self.http.get(self.api + "/info").json()["named_endpoints"]["/" + endpoint]["parameters"]
        self.parameters = [(p["parameter_name"], p.get("parameter_default")) for p in info]
        self.is_state = [kinds.get(i) == "state" for i in dependency["inputs"]]

    def _data(self, values: dict) -> list:
        named = iter(self.parameters)
        data = []
        for state in self.is_state:
            if state:
                data.append(None)
            else:
                name, default = next(named)
                data.append(values.get(name, default))
        return data

    def generate(self, prompt: str, tokens: int, ready: threading.Barrier | None = None) -> dict:
        """One greedy generation, streamed: time to first text, total time, the text and token count."""
        data = self._data({"prompt": prompt, "temperature": 0.0, "max_new_tokens": tokens, "seed": 0})
        if ready is not None:
            ready.wait()
        started = time.perf_counter()
        joined = self.http.post(
            self.api + "/queue/join",
            json={"data": data, "fn_index": self.fn_index, "session_hash": self.session_hash, "event_data": None},
        )
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        first = None
        text = ""
        with self.http.stream("GET", self.api + "/queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event_id):
                    continue
                kind = message.get("msg")
                if kind in ("process_generating", "process_completed"):
                    if not message.get("success", True):
                        raise RuntimeError(str(message.get("output", {}).get("error")))
                    output = message["output"]["data"]
                    text = _apply(text, output[0])
                    if first is None and text:
                        first = time.perf_counter() - started
                    if kind == "process_completed":
                        stats = output[1]
                        break
        total = time.perf_counter() - started
        made = re.search(r"\*\*(\d+)\*\* tokens", stats or "")
        return {"ttft": first or total, "latency": total, "tokens": int(made.group(1)) if made else 0, "text": text}


def _apply(text: str, update) -> str:
    """A streamed output: a whole value, or Gradio's diff operations on it."""
    if isinstance(update, str):
        return update
    for op, path, value in update or []:
        if path:
            continue
        text = text + value if op == "append" else value if op == "replace" else text
    return text


def connect(url: str) -> Session:
    session = Session(url)
    session.generate("Hello", 1)  # the page has loaded: its session exists on the server
    return session


def warm_up(url: str, tokens: int, tries: int = 8) -> None:
    """Until two generations in a row take about as long: the first requests pay for lazy set-up
    (and, on the CPU, for the fast decoder being built in the background), which neither side should."""
    last = None
    for _ in range(tries):
        took = connect(url).generate("Warm up: count from one to twenty.", tokens)["latency"]
        if last is not None and abs(took - last) <= 0.15 * last:
            return
        last = took


def agreement(tokenizer, alone: list[str], together: list[str]) -> float:
    """Share of tokens equal at the same position, the texts tokenised by the model's own tokenizer
    (the shorter answer's missing tokens count as different)."""
    same = total = 0
    for a, b in zip(alone, together, strict=False):
        x, y = tokenizer.encode(a, add_special_tokens=False), tokenizer.encode(b, add_special_tokens=False)
        total += max(len(x), len(y))
        same += sum(p == q for p, q in zip(x, y, strict=False))
    return same / total if total else 1.0


def tokenizer_of(data_dir: Path, model: str | None):
    """The served model's tokenizer: --model, or the bundled model the app converted into the data directory."""
    from transformers import AutoTokenizer

    if model:
        return AutoTokenizer.from_pretrained(model)
    found = next(p.parent for p in sorted((data_dir / "models").rglob("tokenizer.json")))
    return AutoTokenizer.from_pretrained(found)


def together(sessions: list[Session], texts: list[str], tokens: int, errors: list[str]) -> tuple[list[dict], float]:
    """Every session sends its prompt at the same moment; the results and the wall time of the whole."""
    results: list[dict | None] = [None] * len(sessions)
    ready = threading.Barrier(len(sessions) + 1)

    def client(index: int) -> None:
        try:
            results[index] = sessions[index].generate(texts[index], tokens, ready)
        except Exception as error:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(error).__name__}: {error}")
            ready.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sessions))]
    for thread in threads:
        thread.start()
    try:
        ready.wait()  # the N requests go out together from here
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None], time.perf_counter() - started


def _round(alone: list[dict], done: list[dict], wall: float) -> tuple:
    single = sum(r["tokens"] for r in alone) / sum(r["latency"] for r in alone)
    aggregate = sum(r["tokens"] for r in done) / wall
    return aggregate / single, single, aggregate, alone, done


def _median(rounds: list[tuple]) -> tuple:
    """The round with the median speedup (this VM's speed drifts between minutes)."""
    return sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]


def _baseline_figures(base_rounds: list[tuple]) -> dict:
    """The second app's figures, from its median round."""
    base_speedup, base_single, base_aggregate, base_alone, base_done = _median(base_rounds)
    return {
        "single_tokens_per_second": round(base_single, 2),
        "aggregate_tokens_per_second": round(base_aggregate, 2),
        "speedup": round(base_speedup, 2),
        "ttft_p50_s": round(percentile([r["ttft"] for r in base_done], 50), 3),
        "ttft_p95_s": round(percentile([r["ttft"] for r in base_done], 95), 3),
        "latency_p50_s": round(percentile([r["latency"] for r in base_done], 50), 3),
        "single_ttft_p50_s": round(percentile([r["ttft"] for r in base_alone], 50), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alone-then-together rounds; the median round is reported (this VM drifts)",
    )
    parser.add_argument("--model", help="PLAYGROUND_MODEL for the launched app (default: the bundled model)")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also launch the app with PLAYGROUND_BATCHING=0 (every request decoded alone, as before the "
        "scheduler) and measure it in the same rounds, its single requests interleaved with the batched app's",
    )
    parser.add_argument(
        "--shared-prefix",
        type=int,
        default=0,
        metavar="TOKENS",
        help="every prompt starts with the same text of this many tokens (a lesson's system prompt)",
    )
    parser.add_argument(
        "--prefix-baseline",
        action="store_true",
        help="also launch the app with PLAYGROUND_PREFIX_CACHE_MB=0 (every request reads the shared text again) "
        "and measure it in the same rounds",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.prefix_baseline and args.baseline:
        parser.error("--baseline and --prefix-baseline each launch a second app: measure one at a time")

    data_dir = Path(tempfile.mkdtemp(prefix="playground-serve-"))
    process, url = launch(data_dir, args.model)
    base_process = base_url = None
    errors: list[str] = []
    rounds, base_rounds = [], []
    base_env = {"PLAYGROUND_BATCHING": "0"} if args.baseline else {"PLAYGROUND_PREFIX_CACHE_MB": "0"}
    try:
        warm_up(url, args.tokens)  # the model is loaded (and, the first time, converted into data_dir)
        texts = prompts(args.clients, shared_text(tokenizer_of(data_dir, args.model), args.shared_prefix))
        sessions = [connect(url) for _ in texts]  # N open pages, each session built once
        base_sessions: list[Session] = []
        if args.baseline or args.prefix_baseline:
            base_dir = Path(tempfile.mkdtemp(prefix="playground-serve-base-"))
            base_process, base_url = launch(base_dir, args.model, base_env)
            warm_up(base_url, args.tokens)
            base_sessions = [connect(base_url) for _ in texts]
        for _ in range(max(1, args.rounds)):
            alone, base_alone = [], []
            for i, text in enumerate(texts):  # interleaved, so drift of this VM hits both alike
                alone.append(sessions[i].generate(text, args.tokens))
                if base_sessions:
                    base_alone.append(base_sessions[i].generate(text, args.tokens))
            rounds.append(_round(alone, *together(sessions, texts, args.tokens, errors)))
            if base_sessions:
                base_rounds.append(_round(base_alone, *together(base_sessions, texts, args.tokens, errors)))
    finally:
        for running in (process, base_process):
            if running is not None:
                running.terminate()
                running.wait(timeout=60)

    speedup, single_tps, aggregate_tps, alone, done = _median(rounds)
    tokenizer = tokenizer_of(data_dir, args.model)
    report = {
        "clients": args.clients,
        "tokens": args.tokens,
        "rounds": len(rounds),
        "single_tokens_per_second": round(single_tps, 2),
        "aggregate_tokens_per_second": round(aggregate_tps, 2),
        "speedup": round(speedup, 2),
        "ttft_p50_s": round(percentile([r["ttft"] for r in done], 50), 3),
        "ttft_p95_s": round(percentile([r["ttft"] for r in done], 95), 3),
        "latency_p50_s": round(percentile([r["latency"] for r in done], 50), 3),
        "latency_p95_s": round(percentile([r["latency"] for r in done], 95), 3),
        "single_latency_p50_s": round(percentile([r["latency"] for r in alone], 50), 3),
        "single_ttft_p50_s": round(percentile([r["ttft"] for r in alone], 50), 3),
        "speedup_per_round": [round(r[0], 2) for r in rounds],
        # every round's concurrent answers against the same prompts answered alone in that round
        "greedy_token_agreement": round(
            agreement(
                tokenizer,
                [a["text"] for r in rounds for a in r[3]],
                [t["text"] for r in rounds for t in r[4]],
            ),
            4,
        ),
        "errors": len(errors),
    }
    if args.shared_prefix:
        report["shared_prefix_tokens"] = args.shared_prefix
    if base_rounds:
        label = "no_prefix_cache" if args.prefix_baseline else "unbatched"
        report[label] = _baseline_figures(base_rounds)
    if base_rounds and args.prefix_baseline:
        # per round, so the VM's drift hits both alike; the median round's ratio
        ratios = sorted(
            percentile([r["ttft"] for r in b[4]], 50) / percentile([r["ttft"] for r in c[4]], 50)
            for c, b in zip(rounds, base_rounds, strict=False)
        )
        report["ttft_p50_no_prefix_cache_over_cached"] = round(ratios[len(ratios) // 2], 2)
        # the same prompts answered by the app that reads every prompt whole: the cache must not change the text
        report["greedy_agreement_with_no_prefix_cache"] = round(
            agreement(
                tokenizer,
                [a["text"] for r in base_rounds for a in r[3] + r[4]],
                [a["text"] for r in rounds for a in r[3] + r[4]],
            ),
            4,
        )
    elif base_rounds:
        singles = [r[1] / b[1] for r, b in zip(rounds, base_rounds, strict=False)]
        # one client alone, batched app over unbatched app, per round (interleaved requests): the "no slower" check
        report["single_vs_unbatched"] = round(sorted(singles)[len(singles) // 2], 3)
        report["single_vs_unbatched_per_round"] = [round(x, 3) for x in singles]
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
