"""The compression lab on the tiny model: each variant measured as the module says, the shared
model never touched, pruning's zeros where asked, refusals named."""

from __future__ import annotations

import pytest
import torch

from pipelines import inside
from pipelines.errors import InvalidParameter
from pipelines.inside import compression

TEXT = "The river town woke early. Fishing boats left the harbour before sunrise, and the bakery opened."


def _weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.fixture(scope="module")
def report(tiny_handle):
    before = _weights(tiny_handle.model)
    spec = compression.CompressSpec(new_tokens=4, prompt="The river", text=TEXT)
    found = compression.compress(tiny_handle, spec)
    after = _weights(tiny_handle.model)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True)), "the shared model changed"
    return found


def test_every_variant_is_measured_with_the_contracts_fields(report):
    assert [row["name"] for row in report["variants"]] == list(compression.VARIANTS)
    for row in report["variants"]:
        assert {"name", "size_mb", "tokens_per_second", "perplexity", "greedy_agreement"} <= row.keys()
        assert row["size_mb"] > 0 and row["perplexity"] > 1 and 0 <= row["greedy_agreement"] <= 1
        assert row["tokens_per_second"] is None or row["tokens_per_second"] > 0
        assert row["timed_by"]


def test_the_reference_is_the_likelihood_views_perplexity(report, tiny_handle):
    fp32 = report["variants"][0]
    assert fp32["name"] == "fp32" and fp32["greedy_agreement"] == 1.0
    assert fp32["perplexity"] == pytest.approx(inside.perplexity(tiny_handle, TEXT)["perplexity"], rel=1e-4)
    assert fp32["tokens_per_second"] > 0


def test_sizes_follow_the_bits_per_weight(report, tiny_handle):
    rows = {row["name"]: row for row in report["variants"]}
    model = tiny_handle.base_model
    params = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for m in compression._linears(model))
    tables = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())}
    embedding = sum(weight.numel() for weight in tables.values())  # input and (untied) output: Q8_0
    rest = params - linear - embedding
    # the tiny model has no GGUF file behind it: the GGUF rows are its tensor data alone
    for name, bits in (("q8_0", 8.5), ("q4_1", 5.0), ("q4_0", 4.5)):
        expected = linear * bits / 8 + embedding * 8.5 / 8 + rest * 4
        assert rows[name]["size_mb"] * 1e6 == pytest.approx(expected)
    assert rows["int8_weights"]["size_mb"] < rows["fp32"]["size_mb"]
    assert rows["bf16"]["size_mb"] == pytest.approx(rows["fp32"]["size_mb"] / 2, rel=0.05)
    assert rows["q8_0"]["size_mb"] > rows["q4_1"]["size_mb"] > rows["q4_0"]["size_mb"]


def test_gguf_rounding_is_what_gguf_stores():
    import gguf.quants

    weight = torch.randn(8, 64)
    expected = gguf.quants.dequantize(
        gguf.quants.quantize(weight.numpy(), gguf.GGMLQuantizationType.Q4_0), gguf.GGMLQuantizationType.Q4_0
    )
    rounded = weight.clone()
    assert compression._gguf_round(rounded, "Q4_0")
    assert torch.equal(rounded, torch.from_numpy(expected.reshape(8, 64)))
    assert len(torch.unique(rounded[0, :32])) <= 16  # 4 bits: at most 16 levels in a block
    odd = torch.randn(4, 40)  # rows that do not split into blocks of 32 stay as they are
    assert not compression._gguf_round(odd.clone(), "Q8_0")


def test_pruning_zeroes_the_share_asked_and_restores_the_weights(tiny_handle):
    spec = compression.PruneSpec(sparsities=[0.5, 0, 0.3], prompt="The river", new_tokens=3, text=TEXT)
    rows = compression.pruning(tiny_handle, spec)["curve"]
    assert [row["sparsity"] for row in rows] == [0.0, 0.3, 0.5]  # sorted, each measured from the original
    assert rows[0]["greedy_agreement"] == 1.0 and rows[0]["zero_share"] < 0.01
    for row in rows[1:]:
        assert row["zero_share"] == pytest.approx(row["sparsity"], abs=0.01)
    unpruned = inside.perplexity(tiny_handle, TEXT)["perplexity"]
    assert rows[0]["perplexity"] == pytest.approx(unpruned, rel=1e-4)


def test_one_measurement_at_a_time(tiny_handle):
    compression._RUNNING.acquire()
    try:
        with pytest.raises(inside.InsideError, match="someone else"):
            next(compression.measure_variants(tiny_handle, compression.CompressSpec(variants=["fp32"])))
    finally:
        compression._RUNNING.release()
    assert not compression._RUNNING.locked()
    rows = compression.measure_variants(tiny_handle, compression.CompressSpec(variants=["fp32", "q4_0"], new_tokens=4))
    next(rows)
    assert compression._RUNNING.locked()
    rows.close()  # a visitor who leaves mid-way frees the lab
    assert not compression._RUNNING.locked()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (lambda: compression.CompressSpec(variants=["fp8"]), "variants"),
        (lambda: compression.CompressSpec(prompt="  "), "prompt"),
        (lambda: compression.CompressSpec(new_tokens=0), "new_tokens"),
        (lambda: compression.PruneSpec(sparsities=[1.5]), "sparsities"),
        (lambda: compression.PruneSpec(sparsities=[]), "sparsities"),
        (lambda: compression.PruneSpec(sparsities=[i / 20 for i in range(13)]), "sparsities"),
        (lambda: compression.PruneSpec(sparsities=["half"]), "sparsities"),
        (lambda: compression.AdapterCostSpec(prompt=""), "prompt"),
    ],
)
def test_bad_settings_are_refused_by_name(spec, field):
    with pytest.raises(InvalidParameter) as refused:
        spec()
    assert refused.value.param == field


def test_an_empty_text_is_refused(tiny_handle):
    with pytest.raises(InvalidParameter, match="text"):
        compression.compress(tiny_handle, compression.CompressSpec(variants=["fp32"], text=" \n"))
    assert not compression._RUNNING.locked()


def test_fp32_is_always_measured_first():
    assert compression.CompressSpec(variants=["q4_0", "bf16"]).variants == ["fp32", "bf16", "q4_0"]


def test_the_compress_command_keeps_its_json_contract(use_tiny, capsys):
    import json

    from pipelines.cli import main

    code = main(["compress", "--variants", "fp32", "q8_0", "--new-tokens", "4", "--prune", "0", "0.2", "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in document["variants"]] == ["fp32", "q8_0"]
    assert {"size_mb", "tokens_per_second", "perplexity", "greedy_agreement"} <= document["variants"][1].keys()
    assert [row["sparsity"] for row in document["pruning"]] == [0.0, 0.2]
    assert main(["compress", "--variants", "fp8"]) == 2
    assert main(["compress", "--prune", "2"]) == 2
    assert "fp8" in capsys.readouterr().err


def test_adapters_start_as_the_identity_and_count_what_they_train(tiny_handle):
    before = _weights(tiny_handle.model)
    rows = compression.adapter_costs(tiny_handle, compression.AdapterCostSpec(lora_r=4, bottleneck=8, new_tokens=4))
    assert [row["name"].split(",")[0].split(" r=")[0] for row in rows] == [
        "base",
        "LoRA",
        "LoRA",
        "bottleneck adapters",
    ]
    assert len({row["sample"] for row in rows}) == 1  # zero-initialised: the same text, only the cost differs
    config = tiny_handle.base_model.config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    assert rows[3]["trainable"] == layers * 2 * (2 * hidden * 8 + 8 + hidden)  # down and up, with biases
    assert rows[1]["trainable"] == rows[2]["trainable"] > 0 and rows[0]["trainable"] == 0
    assert all(row["tokens_per_second"] > 0 for row in rows)
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(tiny_handle.model), strict=True))


def test_the_compress_command_times_the_adapters(use_tiny, capsys):
    import json

    from pipelines.cli import main

    assert main(["compress", "--variants", "fp32", "--new-tokens", "4", "--adapters", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [row["trainable"] > 0 for row in document["adapters"]] == [False, True, True, True]
    assert {"name", "trainable", "share", "tokens_per_second", "sample"} <= document["adapters"][0].keys()
