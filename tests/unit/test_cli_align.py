"""`python -m pipelines align dpo|rloo|eval`: the JSON contracts, on the tiny model."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # trains models or spawns processes: `make test-fast` skips it

PAIRS = str(ROOT / "assets" / "datasets" / "preference_pairs.jsonl")


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "exactly one JSON document on stdout"
    return json.loads(out)


def test_align_commands(tiny_model_env, data_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Hi!", "Name a colour.")))
    run_json(
        capsys,
        "reward",
        "train",
        "--data",
        PAIRS,
        "--out",
        "rm",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--max-length",
        "96",
        "--json",
    )
    doc = run_json(
        capsys,
        "align",
        "dpo",
        "--data",
        PAIRS,
        "--out",
        "pol-dpo",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "96",
        "--beta",
        "0.3",
        "--json",
    )
    assert doc["steps"] == 1 and doc["adapter_dir"].endswith("pol-dpo")
    doc = run_json(
        capsys,
        "align",
        "rloo",
        "--prompts",
        str(prompts),
        "--reward-model",
        "rm",
        "--out",
        "pol-rloo",
        "--max-steps",
        "1",
        "--num-generations",
        "2",
        "--prompts-per-step",
        "1",
        "--max-completion-length",
        "6",
        "--json",
    )
    assert doc["steps"] == 1 and doc["adapter_dir"].endswith("pol-rloo")
    assert isinstance(doc["mean_reward_start"], float) and isinstance(doc["mean_reward_end"], float)
    doc = run_json(
        capsys,
        "align",
        "eval",
        "--adapter",
        "pol-dpo",
        "--reward-model",
        "rm",
        "--prompts",
        str(prompts),
        "--max-new-tokens",
        "6",
        "--json",
    )
    assert (
        0 <= doc["win_rate"] <= 1
        and isinstance(doc["mean_reward_adapter"], float)
        and isinstance(doc["mean_reward_base"], float)
    )


def test_align_misuse_is_one_line(tiny_model_env, data_dir, tmp_path, capsys):
    assert main(["align", "dpo", "--data", str(tmp_path / "missing.jsonl"), "--out", "x", "--json"]) != 0
    assert main(["align", "dpo", "--data", PAIRS, "--out", "x", "--beta", "0", "--json"]) != 0
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n')
    assert main(["align", "rloo", "--prompts", str(prompts), "--reward-model", "none", "--out", "x", "--json"]) != 0
    assert (
        main(["align", "eval", "--adapter", "none", "--reward-model", "none", "--prompts", str(prompts), "--json"]) != 0
    )
    err = capsys.readouterr().err
    assert "no such file" in err and "beta" in err and "no reward model" in err and "no adapter named" in err
