"""Classification fine-tuning: labelled data with its row problems, the stratified split, the job in
each mode on the tiny model, prediction and the CLI's contract."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from pipelines.engine.sampling import InvalidParameter
from pipelines.train import classify
from tests.helpers import ROOT

SENTIMENT = ROOT / "assets" / "datasets" / "sentiment.jsonl"
PARAPHRASE = ROOT / "assets" / "datasets" / "paraphrase.jsonl"


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bundled_sets_are_balanced_and_clean():
    for path, labels, paired in (
        (SENTIMENT, ["negative", "positive"], False),
        (PARAPHRASE, ["different", "same"], True),
    ):
        examples = classify.read_examples(path)
        assert examples.labels == labels and not examples.problems and examples.paired == paired
        counts = {label: sum(r["label"] == label for r in examples.rows) for label in labels}
        assert len(set(counts.values())) == 1 and min(counts.values()) >= 40
        assert len({classify.model_input(r) for r in examples.rows}) == len(examples.rows)  # no duplicates


def test_row_problems_are_listed_with_their_row(tmp_path):
    path = write(
        tmp_path / "d.jsonl",
        [
            '{"text": "good", "label": "pos"}',
            '{"text": "", "label": "neg"}',
            '{"text": "bad", "label": ["neg"]}',
            "{broken",
            '{"text": "fine", "label": 1}',
            '["not", "an", "object"]',
            '{"text": "meh", "label": "neg"}',
        ],
    )
    examples = classify.read_examples(path)
    assert [(p.row, p.column) for p in examples.problems] == [(2, "text"), (3, "label"), (4, None), (6, None)]
    assert examples.labels == ["1", "neg", "pos"]
    with pytest.raises(InvalidParameter, match="4 rows have problems .*row 2, column 'text'"):
        classify.check_examples(examples, skip_bad_rows=False)
    with pytest.raises(InvalidParameter, match="at least 2 examples; too few for"):
        classify.check_examples(examples, skip_bad_rows=True)
    one = classify.read_examples(write(tmp_path / "one.jsonl", ['{"text": "a", "label": "x"}'] * 3))
    with pytest.raises(InvalidParameter, match="at least 2 different labels, found 1"):
        classify.check_examples(one, skip_bad_rows=False)
    with pytest.raises(InvalidParameter, match="unsupported file type"):
        classify.read_examples(write(tmp_path / "d.txt", ["x"]))


def test_split_holds_out_the_same_share_of_every_label():
    rows = classify.read_examples(SENTIMENT).rows
    train, held = classify.split(rows, 0.25, seed=3)
    assert len(held) == 30 and sum(r["label"] == "positive" for r in held) == 15
    assert not {json.dumps(r) for r in train} & {json.dumps(r) for r in held}
    assert classify.split(rows, 0.25, seed=3) == (train, held) and classify.split(rows, 0.25, seed=4) != (train, held)


def test_spec_refuses_bad_settings():
    with pytest.raises(InvalidParameter, match="mode"):
        classify.ClassifySpec(data="x", out="c", mode="deep")
    with pytest.raises(InvalidParameter, match="out"):
        classify.ClassifySpec(data="x", out="../c")
    assert classify.ClassifySpec(data="x", out="c", mode="lora").rate == classify.DEFAULT_RATES["lora"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["head", "lora", "full"])
def test_train_then_predict_on_the_tiny_model(tiny_model_env, data_dir, capsys, mode):
    argv = ["classify", "train", "--data", str(PARAPHRASE), "--out", f"c-{mode}", "--mode", mode]
    assert main([*argv, "--max-steps", "2", "--batch-size", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 2 and result["labels"] == ["different", "same"] and result["mode"] == mode
    assert 0 <= result["eval_accuracy_before"] <= 1 and 0 <= result["eval_accuracy"] <= 1
    assert sum(map(sum, result["confusion"])) == 20  # a quarter of each label held out
    meta = classify.meta(f"c-{mode}")
    assert meta["data"]["split"] == "stratified by label" and meta["paired"]
    saved = {p.name for p in (data_dir / "classifiers" / f"c-{mode}").iterdir()}
    if mode == "head":  # feature-based: only the head is saved, and only the head trained
        assert "head.safetensors" in saved and result["size_mb"] < 0.1
        from transformers import AutoConfig

        assert result["trainable_params"] == 2 * AutoConfig.from_pretrained(tiny_model_env).hidden_size
    assert (
        main(["classify", "predict", "--model", f"c-{mode}", "--text", "A cat.", "--text-pair", "A cat.", "--json"])
        == 0
    )
    predicted = json.loads(capsys.readouterr().out)
    assert predicted["label"] in ("different", "same")
    assert sum(predicted["probabilities"].values()) == pytest.approx(1)
    again = classify.predict(f"c-{mode}", "A cat.", "A cat.")  # cached, deterministic
    assert again["probabilities"] == pytest.approx(predicted["probabilities"])


def test_cli_refusals_name_the_flag(data_dir, capsys, tmp_path):
    assert main(["classify", "predict", "--model", "missing", "--text", "x"]) == 2
    assert "--model: no classifier named 'missing'" in capsys.readouterr().err
    assert main(["classify", "train", "--data", str(tmp_path / "none.jsonl"), "--out", "c"]) == 2
    assert "--data: no such file" in capsys.readouterr().err
    bad = write(tmp_path / "bad.jsonl", ['{"text": "a", "label": "x"}', '{"text": "b", "label": "x"}'])
    assert main(["classify", "train", "--data", str(bad), "--out", "c"]) == 2
    assert "at least 2 different labels" in capsys.readouterr().err
