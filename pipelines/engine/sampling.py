"""Sampling parameters and the pure functions that turn next-token logits into what is sampled.

Generation and the distribution inspector both call `process_logits`, so the chart a user sees is
computed by exactly the code that picks the token. The order of the filters follows transformers'
`generate` (repetition penalty, temperature, top-k, top-p, min-p) so results are comparable.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from pipelines import knobs
from pipelines.errors import InvalidParameter  # noqa: F401 - re-exported: callers long imported it from here
from pipelines.knobs import knob

MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 200


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token. Validated on construction so no caller can sample nonsense."""

    max_new_tokens: int = knob(128, help="most tokens to generate", label="Max new tokens", low=1, high=8192, step=1)
    temperature: float = knob(
        0.7,
        help="divides the logits: 0 = greedy (always the top token)",
        label="Temperature",
        info="0 = greedy (always the top token)",
        low=0,
        high=5,
        step=0.05,
    )
    top_k: int = knob(
        0, help="keep the k most likely tokens; 0 = off", label="Top-k", info="0 = off", low=0, high=1000, step=1
    )
    top_p: float = knob(
        1.0,
        help="keep the smallest set of tokens whose probability reaches p; 1 = off",
        label="Top-p (nucleus)",
        info="1 = off",
        low=0,
        high=1,
        low_open=True,
        step=0.01,
    )
    min_p: float = knob(
        0.0,
        help="keep tokens at least min-p times as likely as the top one; 0 = off",
        label="Min-p",
        info="0 = off",
        low=0,
        high=1,
        high_open=True,
        step=0.01,
    )
    repetition_penalty: float = knob(
        1.0,
        help="divides the logits of tokens already seen; 1 = off",
        label="Repetition penalty",
        info="1 = off",
        low=0,
        high=10,
        low_open=True,
        step=0.05,
    )
    seed: int | None = knob(
        None,
        help="same seed + settings = same text; none: a fresh seed per call, reported back",
        label="Seed",
        info="-1 = random (the seed used is shown, to replay it)",
        low=0,
        high=2**63 - 1,
        ui_none=-1,
        slider=False,
    )
    stop: tuple[str, ...] = knob(
        default_factory=tuple,
        help=f"stop strings (at most {MAX_STOP_STRINGS}, each up to {MAX_STOP_LENGTH} characters)",
        label="Stop strings",
        metavar="S",
    )

    def __post_init__(self) -> None:
        knobs.check(self)
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, Iterable):
            raise InvalidParameter("stop", f"must be a list of strings, got {stop!r}")
        stop = tuple(stop)
        if any(not isinstance(s, str) for s in stop):
            raise InvalidParameter("stop", "every stop string must be text")
        stop = tuple(dict.fromkeys(s for s in stop if s))  # drop empties and duplicates, keep order
        if len(stop) > MAX_STOP_STRINGS:
            raise InvalidParameter("stop", f"at most {MAX_STOP_STRINGS} stop strings, got {len(stop)}")
        if any(len(s) > MAX_STOP_LENGTH for s in stop):
            raise InvalidParameter("stop", f"each stop string must be at most {MAX_STOP_LENGTH} characters")
        object.__setattr__(self, "stop", stop)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_seed(self, seed: int | None) -> SamplingParams:
        return replace(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingParams:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            name = sorted(unknown)[0]
            raise InvalidParameter(name, "is not a sampling parameter")
        return cls(**dict(data))


# --- the filters -----------------------------------------------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty (Keskar et al. 2019), as in transformers: divide positive logits of
    tokens already seen by `penalty`, multiply negative ones."""
    if penalty == 1.0 or previous_ids.numel() == 0:
        return logits
    out = logits.clone()
    seen = torch.unique(previous_ids)
    values = out[seen]
    out[seen] = torch.where(values > 0, values / penalty, values * penalty)
    return out


def top_k_keep(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.numel():
        return torch.isfinite(logits)
    threshold = torch.topk(logits, k).values[-1]
    return logits >= threshold


def top_p_keep(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: the smallest set of most likely tokens whose probability reaches `p`."""
    if p >= 1.0:
        return torch.isfinite(logits)
    return _mask_of(top_p_indices(logits, p), logits)


def _mask_of(indices: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros(like.numel(), dtype=torch.bool, device=like.device)
    keep[indices] = True
    return keep


def top_p_indices(logits: torch.Tensor, p: float) -> torch.Tensor:
    """The nucleus as token ids, most likely first.

    The nucleus is nearly always a few dozen tokens (SmolLM2 at temperature 0.7, p 0.9: median 2,
    at most 34 over 200 steps), so the most likely ones are found with `topk`, widening until their
    mass reaches `p`, instead of sorting the whole vocabulary on every step. Tokens of probability
    zero (cut by an earlier filter) are never part of it.
    """
    probs = torch.softmax(logits, dim=-1)
    n = probs.numel()
    k = min(n, 64)
    while True:
        top_probs, order = torch.topk(probs, k)
        cumulative = torch.cumsum(top_probs, dim=-1)
        if k == n or float(cumulative[-1]) >= p:
            break
        k = min(n, k * 8)
    keep_top = ((cumulative - top_probs) < p) & (top_probs > 0)
    keep_top[0] = True
    return order[keep_top]


def min_p_keep(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens at least `min_p` times as likely as the most likely one (Nguyen et al. 2024)."""
    if min_p <= 0:
        return torch.isfinite(logits)
    probs = torch.softmax(logits, dim=-1)
    return probs >= min_p * probs.max()


@dataclass
class ProcessedLogits:
    """Every stage of the pipeline for one position, for sampling and for showing."""

    raw: torch.Tensor  # the model's logits
    penalised: torch.Tensor  # after the repetition penalty
    scaled: torch.Tensor  # after temperature (equal to penalised when greedy)
    cut_by: dict[str, torch.Tensor]  # filter name -> tokens that filter removed
    final: torch.Tensor  # logits that are sampled from, -inf where cut
    support: torch.Tensor | None = None  # the finite entries of `final` in ascending order, when already known

    @property
    def final_probs(self) -> torch.Tensor:
        return torch.softmax(self.final, dim=-1)


# the order `process_logits` applies the settings to each position's logits (a capsule records it)
CHAIN = ("repetition_penalty", "temperature", "top_k", "top_p", "min_p")


def process_logits(
    logits: torch.Tensor, params: SamplingParams, previous_ids: torch.Tensor | None = None, *, track_cuts: bool = True
) -> ProcessedLogits:
    """Apply the sampling configuration to one position's logits (1-D, float).

    `track_cuts=False` leaves `cut_by` empty: generation only needs `final`, and the per-filter
    masks the inspector shows cost full-vocabulary passes on every token.
    """
    raw = logits.float()
    prev = previous_ids if previous_ids is not None else torch.empty(0, dtype=torch.long)
    penalised = apply_repetition_penalty(raw, prev.to(raw.device), params.repetition_penalty)
    neg_inf = torch.tensor(float("-inf"), device=raw.device)
    cut_by: dict[str, torch.Tensor] = {}
    if params.greedy:
        keep = torch.zeros_like(penalised, dtype=torch.bool)
        keep[torch.argmax(penalised)] = True
        if track_cuts:
            cut_by["greedy"] = ~keep
        return ProcessedLogits(raw, penalised, penalised, cut_by, torch.where(keep, penalised, neg_inf))

    scaled = penalised / params.temperature
    current = scaled
    support = None
    nothing_cut = torch.zeros_like(scaled, dtype=torch.bool) if track_cuts else None
    filters: tuple[tuple[str, Callable[[torch.Tensor, Any], torch.Tensor], float, bool], ...] = (
        ("top-k", top_k_keep, params.top_k, 0 < params.top_k < scaled.numel()),
        ("top-p", top_p_keep, params.top_p, params.top_p < 1.0),
        ("min-p", min_p_keep, params.min_p, params.min_p > 0),
    )
    for name, keep_fn, value, active in filters:
        if not active:  # a filter that is off cuts nothing; skip its full-vocabulary passes
            if track_cuts:
                cut_by[name] = nothing_cut
            continue
        if name == "top-p" and not track_cuts and params.min_p <= 0:
            # the last filter: its kept ids are the draw's support, which spares the sampler
            # two full-vocabulary passes to find them again
            support = torch.sort(top_p_indices(current, value)).values
            keep = _mask_of(support, current)
        else:
            keep = keep_fn(current, value)
        if track_cuts:
            cut_by[name] = torch.isfinite(current) & ~keep
        current = torch.where(keep, current, neg_inf)
    return ProcessedLogits(raw, penalised, scaled, cut_by, current, support)


def greedy_token(
    logits: torch.Tensor,
    params: SamplingParams,
    previous_ids: torch.Tensor,
    top: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> int:
    """The greedy pick, without building the filtered distribution that only sampling needs.

    A batch already ranks every row's log-probabilities to show the alternatives; without a
    repetition penalty the first of them is the pick, unless it ties the second (log-softmax may
    round two different logits to one value), when the logits decide as `argmax` alone would.
    Same token as `sample_with_probability(process_logits(...))`, one vocabulary pass fewer.
    """
    if params.repetition_penalty == 1.0 and top is not None and top[0].numel() > 1 and bool(top[0][0] > top[0][1]):
        return int(top[1][0])
    return int(torch.argmax(apply_repetition_penalty(logits.float(), previous_ids, params.repetition_penalty)))


def sample_token(processed: ProcessedLogits, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Draw the next token; after a filter, only among the tokens it kept (same distribution, less work)."""
    return sample_with_probability(processed, params, generator)[0]


def sample_with_probability(
    processed: ProcessedLogits, params: SamplingParams, generator: torch.Generator | None
) -> tuple[int, float]:
    """The drawn token and the probability it was drawn with, from the one softmax the draw needs."""
    final = processed.final
    if params.greedy:
        return int(torch.argmax(final)), 1.0
    support = processed.support if processed.support is not None else torch.isfinite(final).nonzero().squeeze(-1)
    if support.numel() < final.numel() // 2:
        probs = torch.softmax(final[support], dim=-1)
        index = int(torch.multinomial(probs, 1, generator=generator))
        return int(support[index]), float(probs[index])
    probs = torch.softmax(final, dim=-1)
    token = int(torch.multinomial(probs, 1, generator=generator))
    return token, float(probs[token])


def entropy_bits(probs: torch.Tensor) -> float:
    nonzero = probs[probs > 0]
    return max(0.0, float(-(nonzero * torch.log2(nonzero)).sum()))


# --- the inspector's view ---------------------------------------------------------------------


@dataclass
class CandidateRow:
    token: str
    id: int
    raw_prob: float  # softmax of the model's logits at temperature 1
    final_prob: float  # probability it is sampled with the current settings
    cut_by: str  # "" if kept, else the first filter that removed it


OTHER_TOKENS = "(other tokens)"  # the one bar for the tail beyond a server's top-K alternatives


@dataclass
class DistributionView:
    rows: list[CandidateRow]
    raw_entropy_bits: float
    final_entropy_bits: float
    kept_tokens: int
    vocab_size: int
    cut_mass: float  # raw probability mass removed by the filters
    # rebuilt from a server's top-K alternatives (pipelines/engine/topk_view.py): what is not exact, "" if all is;
    # vocab_size is then 0 (unknown) and tail_kept says whether tokens beyond the K can still be sampled
    approximate: str = ""
    tail_kept: bool = False

    def summary(self) -> str:
        if self.vocab_size:
            kept = f"{self.kept_tokens:,} of {self.vocab_size:,} tokens can be sampled"
        else:
            known = sum(r.token != OTHER_TOKENS for r in self.rows)
            kept = f"{self.kept_tokens:,} of the server's top {known} tokens can be sampled"
            kept += ", and some beyond them" if self.tail_kept else ""
        text = (
            f"{kept}; the filters removed "
            f"{self.cut_mass:.1%} of the model's probability mass. Entropy: "
            f"{self.raw_entropy_bits:.2f} bits at T=1 -> {self.final_entropy_bits:.2f} bits after settings."
        )
        if self.vocab_size:
            return text
        other = next((r.raw_prob for r in self.rows if r.token == OTHER_TOKENS), 0.0)
        if other:
            text += (
                f" The model's chart (T = 1) is **approximate**: the {other:.1%} of probability beyond the server's "
                "top alternatives is one bar."
            )
        if self.approximate:
            text += f" What is sampled with your settings is **approximate**: {self.approximate}."
        else:
            text += " What is sampled with your settings is exact: the filters cut everything beyond the server's top alternatives."
        return text


def inspect_distribution(
    logits: torch.Tensor,
    params: SamplingParams,
    previous_ids: torch.Tensor | None,
    decode: Callable[[int], str],
    top_n: int = 20,
) -> DistributionView:
    """The top candidates before and after the settings, with the filter that cut each one."""
    processed = process_logits(logits, params, previous_ids)
    raw_probs = torch.softmax(processed.raw, dim=-1)
    final_probs = processed.final_probs
    candidates = torch.cat([torch.topk(raw_probs, top_n).indices, torch.topk(final_probs, top_n).indices])
    ordered = sorted({int(i) for i in candidates}, key=lambda i: (-float(final_probs[i]), -float(raw_probs[i])))[
        : max(top_n, 1)
    ]
    ordered.sort(key=lambda i: -float(raw_probs[i]))
    rows = []
    for token_id in ordered:
        cut = next((name for name, mask in processed.cut_by.items() if bool(mask[token_id])), "")
        rows.append(
            CandidateRow(
                token=decode(token_id),
                id=token_id,
                raw_prob=float(raw_probs[token_id]),
                final_prob=float(final_probs[token_id]),
                cut_by=cut,
            )
        )
    kept = torch.isfinite(processed.final)
    return DistributionView(
        rows=rows,
        raw_entropy_bits=entropy_bits(raw_probs),
        final_entropy_bits=entropy_bits(final_probs),
        kept_tokens=int(kept.sum()),
        vocab_size=int(logits.numel()),
        cut_mass=float(raw_probs[~kept].sum()),
    )


def parse_stop(text: str | None) -> tuple[str, ...]:
    """One stop string per line; backslash escapes (\\n, \\t) let users write a newline."""
    if not text:
        return ()
    out = []
    for line in text.splitlines():
        if not line:
            continue
        try:
            out.append(codecs.decode(line, "unicode_escape") if "\\" in line else line)
        except UnicodeDecodeError as error:
            raise InvalidParameter("stop", f"bad escape in {line!r}: {error.reason}") from error
    return tuple(out)


def format_stop(stops: Sequence[str]) -> str:
    return "\n".join(s.encode("unicode_escape").decode("ascii") for s in stops)
