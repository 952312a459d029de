"""The sampling filters against distributions computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.engine.sampling import (
    InvalidParameter,
    SamplingParams,
    apply_repetition_penalty,
    entropy_bits,
    greedy_token,
    inspect_distribution,
    process_logits,
    sample_token,
    sample_with_probability,
)

# probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625
PROBS = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625])
LOGITS = torch.log(PROBS)


def kept(processed) -> list[int]:
    return [i for i, v in enumerate(processed.final.tolist()) if math.isfinite(v)]


def test_temperature_one_leaves_distribution_unchanged():
    p = process_logits(LOGITS, SamplingParams(temperature=1.0))
    assert torch.allclose(p.final_probs, PROBS)


def test_temperature_sharpens_and_flattens():
    # T = 0.5 squares the probabilities before renormalising: 0.25, 0.0625, ... / sum
    squared = PROBS**2 / (PROBS**2).sum()
    assert torch.allclose(process_logits(LOGITS, SamplingParams(temperature=0.5)).final_probs, squared, atol=1e-6)
    rooted = PROBS**0.5 / (PROBS**0.5).sum()
    assert torch.allclose(process_logits(LOGITS, SamplingParams(temperature=2.0)).final_probs, rooted, atol=1e-6)


def test_greedy_is_one_hot_on_the_argmax():
    p = process_logits(LOGITS, SamplingParams(temperature=0))
    assert p.final_probs.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert sample_token(p, SamplingParams(temperature=0), None) == 0
    assert p.cut_by["greedy"].tolist() == [False, True, True, True, True]


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_shortcut_picks_what_the_full_pipeline_picks(penalty):
    """The batch's ranked alternatives give the greedy pick; a tie at the top, or a repetition
    penalty, leaves it to the logits, so the token never depends on being batched."""
    params = SamplingParams(temperature=0, repetition_penalty=penalty)
    history = torch.tensor([3, 7, 7, 11])
    for seed in range(20):
        logits = torch.randn(300, generator=torch.Generator().manual_seed(seed)) * 4
        if seed % 4 == 0:  # a tie for first place: argmax takes the lowest id, topk may not
            logits[[5, 200]] = logits.max() + 1
        if seed % 4 == 1:  # the leader is a token already seen: the penalty may demote it
            logits[7] = logits.max() + 0.1
        expected = sample_token(process_logits(logits, params, history), params, None)
        found = torch.topk(torch.log_softmax(logits, -1), 5)
        assert greedy_token(logits, params, history, (found.values, found.indices)) == expected
        assert greedy_token(logits, params, history) == expected


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0),
        SamplingParams(temperature=0.7, top_p=0.9),
        SamplingParams(temperature=1.3, top_k=3, min_p=0.05),
        SamplingParams(temperature=1.0),
        SamplingParams(temperature=2.0, top_p=0.999),
        SamplingParams(temperature=1.0, top_k=40, top_p=0.95),
    ],
)
def test_generation_skips_the_inspector_bookkeeping_but_draws_the_same(params):
    logits = torch.randn(500, generator=torch.Generator().manual_seed(4)) * 3
    full, lean = process_logits(logits, params), process_logits(logits, params, track_cuts=False)
    assert torch.equal(full.final, lean.final) and lean.cut_by == {}
    if lean.support is not None:  # known from top-p: exactly the tokens that can be drawn, in id order
        assert torch.equal(lean.support, torch.isfinite(full.final).nonzero().squeeze(-1))
    for seed in range(5):
        token = sample_token(full, params, torch.Generator().manual_seed(seed))
        same, probability = sample_with_probability(lean, params, torch.Generator().manual_seed(seed))
        assert same == token and probability == pytest.approx(float(full.final_probs[token]), rel=1e-5)


def test_top_k_keeps_k_and_renormalises():
    p = process_logits(LOGITS, SamplingParams(temperature=1.0, top_k=2))
    assert kept(p) == [0, 1]
    assert torch.allclose(p.final_probs[:2], torch.tensor([2 / 3, 1 / 3]))
    assert p.cut_by["top-k"].tolist() == [False, False, True, True, True]


def test_top_p_smallest_set_reaching_p():
    # 0.5 < 0.7, 0.5 + 0.25 = 0.75 >= 0.7 -> keep the first two
    assert kept(process_logits(LOGITS, SamplingParams(temperature=1.0, top_p=0.7))) == [0, 1]
    # exactly reaching 0.75 keeps two; a hair above needs the third
    assert kept(process_logits(LOGITS, SamplingParams(temperature=1.0, top_p=0.75))) == [0, 1]
    assert kept(process_logits(LOGITS, SamplingParams(temperature=1.0, top_p=0.76))) == [0, 1, 2]
    # the most likely token always survives
    assert kept(process_logits(LOGITS, SamplingParams(temperature=1.0, top_p=0.01))) == [0]


def test_top_p_applies_after_top_k_on_renormalised_mass():
    # after top-k=3 the mass is 0.5/0.875, 0.25/0.875, 0.125/0.875 = 0.571, 0.286, 0.143
    p = process_logits(LOGITS, SamplingParams(temperature=1.0, top_k=3, top_p=0.8))
    assert kept(p) == [0, 1]
    assert p.cut_by["top-k"].tolist() == [False, False, False, True, True]
    assert p.cut_by["top-p"].tolist() == [False, False, True, False, False]


def test_min_p_relative_to_the_top_token():
    # threshold 0.3 * 0.5 = 0.15: keeps 0.5 and 0.25
    assert kept(process_logits(LOGITS, SamplingParams(temperature=1.0, min_p=0.3))) == [0, 1]
    # threshold 0.2 * 0.5 = 0.1: keeps 0.125 too
    assert kept(process_logits(LOGITS, SamplingParams(temperature=1.0, min_p=0.2))) == [0, 1, 2]


def test_repetition_penalty_ctrl_rule():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    out = apply_repetition_penalty(logits, torch.tensor([0, 1, 1]), 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5, 3.0]


def test_repetition_penalty_matches_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    logits = torch.randn(50)
    previous = torch.tensor([3, 7, 7, 11, 40])
    expected = RepetitionPenaltyLogitsProcessor(1.3)(previous[None], logits[None].clone())[0]
    assert torch.allclose(apply_repetition_penalty(logits, previous, 1.3), expected)


def test_filters_match_transformers_warpers():
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(1)
    logits = torch.randn(1000) * 3
    params = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, min_p=0.05)
    warpers = LogitsProcessorList(
        [TemperatureLogitsWarper(0.8), TopKLogitsWarper(50), TopPLogitsWarper(0.9), MinPLogitsWarper(0.05)]
    )
    expected = torch.softmax(warpers(torch.zeros(1, 1, dtype=torch.long), logits[None].clone())[0], -1)
    assert torch.allclose(process_logits(logits, params).final_probs, expected, atol=1e-6)


def test_sampling_follows_the_shown_distribution():
    """What the inspector shows is what is sampled: empirical frequencies match final_probs."""
    params = SamplingParams(temperature=0.9, top_k=4, top_p=0.95)
    processed = process_logits(LOGITS, params)
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(20_000):
        counts[sample_token(processed, params, generator)] += 1
    assert torch.allclose(counts / counts.sum(), processed.final_probs, atol=0.015)
    view = inspect_distribution(LOGITS, params, None, str, top_n=5)
    shown = {row.id: row.final_prob for row in view.rows}
    assert all(abs(shown[i] - float(processed.final_probs[i])) < 1e-7 for i in range(5))


def test_inspector_reports_cut_filter_entropy_and_mass():
    view = inspect_distribution(LOGITS, SamplingParams(temperature=1.0, top_k=2), None, lambda i: f"t{i}", top_n=5)
    assert [r.cut_by for r in view.rows] == ["", "", "top-k", "top-k", "top-k"]
    assert view.raw_entropy_bits == pytest.approx(1.875)  # 0.5*1 + 0.25*2 + 0.125*3 + 2*0.0625*4
    assert view.final_entropy_bits == pytest.approx(entropy_bits(torch.tensor([2 / 3, 1 / 3])))
    assert view.cut_mass == pytest.approx(0.25)
    assert view.kept_tokens == 2 and view.vocab_size == 5
    assert [r.token for r in view.rows] == ["t0", "t1", "t2", "t3", "t4"]


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"top_p": 1.7}, "top_p"),
        ({"top_p": 0}, "top_p"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"min_p": 1.0}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"seed": -3}, "seed"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": [1, 2]}, "stop"),
        ({"stop": ["x" * 500]}, "stop"),
        ({"stop": [str(i) for i in range(40)]}, "stop"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, param):
    with pytest.raises(InvalidParameter) as info:
        SamplingParams(**kwargs)
    assert info.value.param == param
    assert str(info.value).startswith(param)


def test_params_normalise_and_round_trip():
    p = SamplingParams(stop=["\n", "", "\n", "END"], top_k=5.0, seed=7)
    assert p.stop == ("\n", "END") and p.top_k == 5 and isinstance(p.top_k, int)
    assert SamplingParams.from_dict(p.to_dict()) == p
    with pytest.raises(InvalidParameter):
        SamplingParams.from_dict({"temprature": 1})


@pytest.mark.parametrize("scale", [0.01, 1.0, 8.0])  # flat (nucleus of thousands), typical, peaked
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.999])
def test_top_p_matches_a_full_sort(scale, p):
    from pipelines.engine.sampling import top_p_keep

    torch.manual_seed(int(scale * 100) + int(p * 1000))
    logits = torch.randn(49152) * scale
    probs = torch.softmax(logits, dim=-1)
    ordered, order = torch.sort(probs, descending=True)
    before = torch.cumsum(ordered, dim=-1) - ordered
    expected = torch.zeros(49152, dtype=torch.bool)
    expected[order[before < p]] = True
    expected[order[0]] = True
    assert torch.equal(top_p_keep(logits, p), expected)


def test_sampling_only_among_kept_tokens_keeps_the_distribution():
    from pipelines.engine.sampling import process_logits, sample_token

    logits = torch.full((1000,), -5.0)
    logits[:4] = torch.tensor([2.0, 1.0, 0.5, 0.0])
    params = SamplingParams(temperature=1.0, top_k=4)
    processed = process_logits(logits, params)
    generator = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_token(processed, params, generator) for _ in range(4000)])
    expected = torch.softmax(logits[:4], dim=-1)
    observed = torch.bincount(draws, minlength=4)[:4].float() / len(draws)
    assert draws.max() < 4 and torch.allclose(observed, expected, atol=0.03)
