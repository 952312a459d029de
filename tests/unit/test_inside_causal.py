"""Inside round 2 (issue 40) on the tiny model: head scores, activation patching's exactness, steering."""

from __future__ import annotations

import json

import pytest
import torch

from pipelines.cli import main
from pipelines.errors import InvalidParameter
from pipelines.inside import heads, patching, steering

CLEAN = "The Eiffel Tower is in the city of"
CORRUPT = "The Colosseum is in the city of"  # as many tokens as the clean prompt (SmolLM2's tokenizer)


# --- heads -----------------------------------------------------------------------------------------


def _pattern(found: heads.Probe, where) -> torch.Tensor:
    """Attention weights [rows, 1 head, L, L] that put all of each query's weight on where(row, query)."""
    rows, length = found.ids.shape
    weights = torch.zeros(rows, 1, length, length)
    for row in range(rows):
        for query in range(length):
            weights[row, 0, query, where(row, query)] = 1.0
    return weights


def test_each_score_is_one_for_its_own_pattern_and_low_for_the_others(tokenizer):
    found = heads.probe(tokenizer)
    t = found.copy_length
    induction = _pattern(found, lambda _r, q: q - t + 1 if q > t else 0)
    previous = _pattern(found, lambda _r, q: max(q - 1, 0))
    sink = _pattern(found, lambda _r, _q: 0)
    table = heads.scores_from_attention([induction, previous, sink], found)  # 3 "layers" of one head
    assert table.shape == (3, 1, 3)
    assert table[0, 0, 0] == 1.0 and table[1, 0, 1] == 1.0 and table[2, 0, 2] == 1.0
    assert table[0, 0, 1] < 0.1 and table[1, 0, 0] < 0.1 and table[2, 0, 0] == 0.0 and table[1, 0, 2] < 0.1


def test_the_probe_repeats_random_tokens_and_reads_ordinary_text(tokenizer):
    found = heads.probe(tokenizer)
    t = found.copy_length
    for row in found.ids[: found.random_rows]:
        assert torch.equal(row[1 : t + 1], row[t + 1 :])
        assert len(set(row[1 : t + 1].tolist())) == t  # no token repeats inside a copy: only the copy repeats
    assert torch.equal(found.ids, heads.probe(tokenizer).ids)  # the same batch every time


def test_a_scan_scores_every_head_once_and_is_cached(tiny_handle, data_dir):
    report = heads.scan(tiny_handle)
    assert not report["cached"] and report["layers"] == 2 and report["heads_per_layer"] == 4
    assert [(h["layer"], h["head"]) for h in report["heads"]] == [(layer, h) for layer in range(2) for h in range(4)]
    for head in report["heads"]:
        assert all(0.0 <= head[score] <= 1.0 for score in heads.SCORES)
    again = heads.scan(tiny_handle)
    assert again["cached"] and again["heads"] == report["heads"]
    assert list((data_dir / "inside" / "heads").glob("*.json"))
    assert not heads.scan(tiny_handle, refresh=True)["cached"]


def test_a_torn_cache_is_scanned_again(tiny_handle, data_dir):
    heads.scan(tiny_handle)
    (cached,) = (data_dir / "inside" / "heads").glob("*.json")
    cached.write_text('{"heads": [', encoding="utf-8")
    assert not heads.scan(tiny_handle)["cached"]


# --- activation patching ------------------------------------------------------------------------------


def test_patching_the_whole_residual_stream_at_any_layer_gives_the_clean_output(tiny_handle):
    found = patching.prepare(tiny_handle, CLEAN, CORRUPT, " Paris")
    assert found.clean.numel() == found.corrupt.numel() and not torch.equal(found.clean, found.corrupt)
    every = list(range(found.corrupt.numel()))
    for layer in range(2):
        logits = patching.patched_logits(
            tiny_handle, found, place="residual", layer=layer, positions=[every], adapter=None
        )
        assert torch.allclose(logits[0], found.clean_logits, atol=1e-5)
    assert not torch.allclose(found.clean_logits, found.corrupt_logits, atol=1e-3)  # the prompts do differ


def test_the_grid_recovers_the_clean_difference_only_where_the_answer_is_read(tiny_handle):
    report = patching.patch(tiny_handle, CLEAN, CORRUPT, target=" Paris", places=("residual", "attention", "mlp"))
    last = len(report["layers"]) - 1
    n = len(report["positions"])
    assert len(report["grid"]) == 2 and all(len(row) == n for row in report["grid"])
    # after the last block only the last position reaches the prediction: it alone recovers all, the rest nothing
    assert report["grid"][last][-1] == pytest.approx(report["clean_logit_diff"], abs=1e-3)
    assert report["grid"][last][:-1] == pytest.approx([report["corrupt_logit_diff"]] * (n - 1), abs=1e-3)
    assert report["recovered"]["residual"][last][-1] == pytest.approx(1.0, abs=1e-3)
    # positions the prompts share see the same tokens before them: patching one of them changes nothing
    shared = 0  # "The"
    assert report["grid"][0][shared] == pytest.approx(report["corrupt_logit_diff"], abs=1e-4)
    assert set(report["grids"]) == {"residual", "attention", "mlp"}
    assert report["clean_logit_diff"] != report["corrupt_logit_diff"]
    assert report["target"]["token"] == "ĠParis" and report["foil"]["id"] != report["target"]["id"]


def test_rows_go_through_in_small_batches_with_the_same_result(tiny_handle, monkeypatch):
    whole = patching.patch(tiny_handle, CLEAN, CORRUPT, target=" Paris")
    monkeypatch.setattr(patching, "ROWS_PER_PASS", 2)  # 9 positions: 5 passes per layer
    chunked = patching.patch(tiny_handle, CLEAN, CORRUPT, target=" Paris")["grid"]
    assert torch.allclose(torch.tensor(chunked), torch.tensor(whole["grid"]), atol=1e-3)


def test_a_prompt_too_long_to_patch_is_refused_before_any_pass(tiny_handle):
    long = "word " * (patching.MAX_PATCH_TOKENS + 5)
    with pytest.raises(InvalidParameter, match=f"patching takes at most {patching.MAX_PATCH_TOKENS}"):
        patching.patch(tiny_handle, long, long, target=" Paris")


def test_one_cell_shows_the_patched_distribution(tiny_handle):
    cell = patching.patch_one(tiny_handle, CLEAN, CORRUPT, target=" Paris", layer=1, position=8)
    full = patching.patch(tiny_handle, CLEAN, CORRUPT, target=" Paris")
    assert cell["logit_diff"] == pytest.approx(full["grid"][1][8], abs=1e-3)
    assert len(cell["patched_top"]) == patching.TOP and cell["clean_top"] == full["clean_top"]


@pytest.mark.parametrize(
    ("clean", "corrupt", "target", "foil", "message"),
    [
        (CLEAN, "The Colosseum is located in Rome", " Paris", None, "patching needs prompts of the same length"),
        (CLEAN, CORRUPT, "Parisiennes-like", None, "give a one-token answer"),
        (CLEAN, CORRUPT, " Paris", " Paris", "is the target itself"),
        (CLEAN, CORRUPT, "  ", None, "target: is empty"),
        ("", CORRUPT, " Paris", None, "clean: is empty"),
    ],
)
def test_patching_refuses_what_it_cannot_compare(tiny_handle, clean, corrupt, target, foil, message):
    with pytest.raises(InvalidParameter, match=message):
        patching.patch(tiny_handle, clean, corrupt, target=target, foil=foil)


# --- steering ----------------------------------------------------------------------------------------


POSITIVE = ["What a wonderful day.", "I love this song.", "The food was great."]
NEGATIVE = ["What an awful day.", "I hate this song, and the singer is worse.", "The food was cold."]


def test_the_vector_is_the_difference_of_the_sets_mean_streams(tiny_handle):
    found = steering.vector(tiny_handle, POSITIVE, NEGATIVE, layer=0)

    def mean_stream(prompts):
        means = []
        for prompt in prompts:
            ids = tiny_handle.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                hidden = tiny_handle.model(input_ids=ids, output_hidden_states=True).hidden_states[1][0]
            means.append(hidden[1:].mean(dim=0))  # the first token left out
        return torch.stack(means).mean(dim=0)

    assert torch.allclose(found.direction, mean_stream(POSITIVE) - mean_stream(NEGATIVE), atol=1e-4)
    assert found.positive == 3 and found.residual_norm > 0


def test_many_prompts_go_through_in_small_batches_with_the_same_vector(tiny_handle, monkeypatch):
    positive = [f"{word} and lovely, number {n}." for n, word in enumerate(["Great", "Fine", "Superb"] * 12)]
    negative = [f"{word}, truly, number {n}." for n, word in enumerate(["Awful", "Bad"] * 17)]
    batched = steering.vector(tiny_handle, positive, negative, layer=1)
    monkeypatch.setattr(steering, "PROMPTS_PER_PASS", 1)
    alone = steering.vector(tiny_handle, positive, negative, layer=1)
    assert torch.allclose(batched.direction, alone.direction, atol=1e-4)
    assert batched.residual_norm == pytest.approx(alone.residual_norm, rel=1e-4)


def test_strength_zero_changes_nothing_and_a_strong_vector_changes_the_text(tiny_handle):
    found = steering.vector(tiny_handle, POSITIVE, NEGATIVE, layer=1)
    same = steering.steer(tiny_handle, "Today", found, steering.SteerSpec(layer=1, strength=0, max_new_tokens=12))
    assert same["steered"] == same["unsteered"] and same["steered"]
    pushed = steering.steer(tiny_handle, "Today", found, steering.SteerSpec(layer=1, strength=40, max_new_tokens=12))
    assert pushed["steered"] != pushed["unsteered"]
    assert pushed["unsteered"] == same["unsteered"]  # one seed: the unsteered row is the same text
    projection = pushed["projection"]["unsteered"]
    assert projection[0]["piece"] and all(isinstance(p["value"], float) for p in projection)
    assert len(projection) == pushed["prompt_tokens"] + pushed["new_tokens"]["unsteered"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("\n \n", "is empty"),
        ('{"text": 3}', 'needs a "text" string'),
        ("{broken", "starts like JSON but is not"),
        ('{"text": ' * 50_000 + '"x"' + "}" * 50_000, "nested deeper than"),
        ("x" * 3_000, "at most 2,000"),
        ("ok\n" * 600, "more than 500 prompts"),
    ],
)
def test_prompt_sets_refuse_bad_files_clearly(text, message):
    with pytest.raises(InvalidParameter, match=message):
        steering.prompts_from_text(text, "positive")


def test_prompt_sets_read_lines_or_json_lines(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("one\n\n two \n", encoding="utf-8")
    assert steering.prompts_from_file(plain, "positive") == ["one", "two"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n{"text": "b", "label": "positive"}\n', encoding="utf-8")
    assert steering.prompts_from_file(rows, "negative") == ["a", "b"]
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InvalidParameter, match="not UTF-8"):
        steering.prompts_from_file(binary, "positive")
    with pytest.raises(InvalidParameter, match="cannot read"):
        steering.prompts_from_file(tmp_path / "absent.txt", "positive")
    positive, negative = steering.sentiment_sets()
    assert len(positive) >= 50 and len(negative) >= 50


# --- the CLI contracts ----------------------------------------------------------------------------------


def _json(capsys, *argv: str) -> dict:
    assert main(["inspect", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_heads_patch_and_steer_cli_contracts(use_tiny, capsys, tmp_path):
    found = _json(capsys, "heads")
    assert len(found["heads"]) == 8 and set(found["heads"][0]) >= {
        "layer",
        "head",
        "induction",
        "previous_token",
        "sink",
    }
    patched = _json(capsys, "patch", "--clean", CLEAN, "--corrupt", CORRUPT, "--target", "Paris")
    assert set(patched) >= {"grid", "layers", "positions", "clean_logit_diff", "corrupt_logit_diff"}
    assert len(patched["grid"]) == len(patched["layers"]) == 2 and len(patched["grid"][0]) == len(patched["positions"])
    positive, negative = tmp_path / "pos.txt", tmp_path / "neg.txt"
    positive.write_text("\n".join(POSITIVE), encoding="utf-8")
    negative.write_text("\n".join(NEGATIVE), encoding="utf-8")
    steered = _json(
        capsys,
        "steer",
        "--positive",
        str(positive),
        "--negative",
        str(negative),
        "--layer",
        "1",
        "--strength",
        "8",
        "--prompt",
        "Today",
        "--max-new-tokens",
        "6",
    )
    assert isinstance(steered["steered"], str) and isinstance(steered["unsteered"], str)
    assert main(["inspect", "patch", "--clean", CLEAN, "--corrupt", "Rome", "--target", "Paris"]) == 2
    assert "patching needs prompts of the same length" in capsys.readouterr().err
    assert (
        main(["inspect", "steer", "--positive", str(tmp_path / "nope"), "--negative", str(negative), "--prompt", "x"])
        == 2
    )
    assert "cannot read" in capsys.readouterr().err
    assert (
        main(
            [
                "inspect",
                "steer",
                "--positive",
                str(positive),
                "--negative",
                str(negative),
                "--layer",
                "5",
                "--prompt",
                "x",
            ]
        )
        == 2
    )
    assert "layer: must be between 0 and 1" in capsys.readouterr().err
    assert main(["inspect", "lens", "--prompt", "The capital", "--tuned"]) == 2
    assert "fitted for SmolLM2-135M-Instruct, not tiny-llama" in capsys.readouterr().err


# --- the tuned lens -------------------------------------------------------------------------------------


def test_each_layers_kl_to_the_final_distribution_is_zero_at_the_last_layer(tiny_handle):
    from pipelines import inside

    report = inside.lens(tiny_handle, "The capital of France is")
    # fp32 rounding of the log-sum-exp over 49,152 logits (the tiny model's are scaled up: large): ~1e-3 nats
    assert len(report["kl"]) == 2 and report["kl"][-1] == pytest.approx(0.0, abs=2e-3)
    assert all(v >= -2e-3 for v in report["kl"]) and report["kl"][0] > 0.05


def test_a_fitted_tuned_lens_is_closer_to_the_final_distribution_on_held_out_text(tiny_handle):
    from pipelines.inside import tuned_lens

    spec = tuned_lens.FitSpec(rank=4, steps=60, positions=128, context=64, rows=48, lr=3e-3)
    translators, report = tuned_lens.fit(tiny_handle, spec)
    assert report["loss_last"] < report["loss_first"]
    found = tuned_lens.compare(tiny_handle, translators)  # text the fit never saw
    assert found["kl_tuned_lens_mean"] < found["kl_logit_lens_mean"]
    assert found["kl_tuned_lens"][-1] == found["kl_logit_lens"][-1]  # the last layer is read as it is


def test_the_shipped_tuned_lens_refuses_a_model_it_was_not_fitted_for(tiny_handle):
    from pipelines import inside
    from pipelines.inside import tuned_lens

    with pytest.raises(inside.InsideError, match="fitted for SmolLM2-135M-Instruct, not tiny-llama"):
        tuned_lens.bundled_for(tiny_handle)


def test_translators_survive_a_save_and_load(tmp_path):
    from pipelines.inside import tuned_lens

    made = tuned_lens.Translators(3, 16, 4, seed=1)
    with torch.no_grad():
        made.up.normal_()
    tuned_lens.save(made, tmp_path / "lens", {"base_model": "x", "kind": "tuned_lens"})
    loaded, meta = tuned_lens.load(tmp_path / "lens")
    stream = torch.randn(5, 16)
    assert meta["base_model"] == "x"
    assert torch.allclose(loaded.translate(1, stream), made.translate(1, stream), atol=1e-2)  # stored in fp16
    assert torch.equal(loaded.translate(3, stream), stream)  # past the fitted layers: as it is
