"""`python -m pipelines generate`: the JSON contract and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelines.cli import main
from tests.helpers import ROOT


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "exactly one JSON document on stdout"
    return json.loads(out)


def test_generate_json_contract(use_tiny, capsys):
    doc = run_json(capsys, "generate", "--prompt", "Hello there", "--max-new-tokens", "6", "--seed", "3", "--json")
    assert set(doc) >= {"text", "tokens", "finish_reason", "tokens_per_second"}
    assert isinstance(doc["text"], str) and doc["finish_reason"] in {"length", "stop", "eos"}
    assert isinstance(doc["tokens_per_second"], float)
    for token in doc["tokens"]:
        assert isinstance(token["token"], str) and isinstance(token["id"], int)
        assert isinstance(token["logprob"], float)
        assert all(set(alt) >= {"token", "logprob"} for alt in token["top"])


def test_same_seed_same_text(use_tiny, capsys):
    args = (
        "generate",
        "--prompt",
        "Once upon",
        "--temperature",
        "1.0",
        "--seed",
        "42",
        "--max-new-tokens",
        "12",
        "--json",
    )
    assert run_json(capsys, *args)["text"] == run_json(capsys, *args)["text"]


def test_stop_flag_takes_several_strings(use_tiny, capsys):
    doc = run_json(
        capsys,
        "generate",
        "--prompt",
        "Hello",
        "--temperature",
        "0",
        "--max-new-tokens",
        "20",
        "--stop",
        "a",
        "e",
        "--json",
    )
    assert "a" not in doc["text"] and "e" not in doc["text"]


def test_plain_output_streams_text(use_tiny, capsys):
    assert main(["generate", "--prompt", "Hello", "--max-new-tokens", "5", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() and "tokens/s" in captured.err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["generate", "--prompt", "hi", "--top-p", "1.7"], "--top-p: must be in (0, 1]"),
        (["generate", "--prompt", "hi", "--temperature", "-1"], "--temperature"),
        (["generate", "--prompt", "   "], "prompt"),
        (["generate", "--prompt", "hi", "--top-k", "many"], "--top-k"),
        (["generate"], "--prompt"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_invalid_input_is_one_line_and_non_zero(use_tiny, capsys, argv, needle):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_overlong_prompt_names_the_prompt(use_tiny, capsys):
    assert main(["generate", "--prompt", "word " * 600, "--json"]) == 2
    err = capsys.readouterr().err
    assert "prompt" in err and "context window" in err


def test_real_process_fails_fast_without_traceback():
    """Validation happens before the model is loaded: bad flags cost no model load."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "generate", "--prompt", "hi", "--top-p", "1.7", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "--top-p" in result.stderr


def test_chat_json_contract(use_tiny, capsys, tmp_path):
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]))
    doc = run_json(capsys, "chat", "--messages", str(messages), "--max-new-tokens", "5", "--json")
    assert doc["role"] == "assistant" and isinstance(doc["content"], str)
    assert doc["prompt_tokens"] > 5 and 1 <= doc["completion_tokens"] <= 5 and doc["dropped_turns"] == 0


@pytest.mark.parametrize(
    "content, needle",
    [("[]", "end with a user message"), ("{oops", "not valid JSON"), ('[{"role": "bot", "content": "x"}]', "role")],
)
def test_chat_bad_files_are_one_line_errors(use_tiny, capsys, tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["chat", "--messages", str(path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_chat_unknown_adapter_and_missing_file(use_tiny, capsys, tmp_path):
    path = tmp_path / "m.json"
    path.write_text('[{"role": "user", "content": "Hi"}]')
    assert main(["chat", "--messages", str(path), "--adapter", "nope", "--json"]) == 1
    assert "no adapter named 'nope'" in capsys.readouterr().err
    assert main(["chat", "--messages", str(tmp_path / "missing.json")]) == 2


@pytest.mark.slow
def test_finetune_json_contract_in_the_foreground(tiny_model_env, capsys, tmp_path, data_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pipelines.store import jobs
    from tests.helpers import write_sft_rows

    data = write_sft_rows(tmp_path / "d.jsonl")
    doc = run_json(
        capsys,
        "finetune",
        "--data",
        str(data),
        "--out",
        "cli-adapter",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--max-length",
        "64",
        "--json",
    )
    assert set(doc) >= {"adapter_dir", "train_loss", "eval_loss", "steps", "seconds"}
    assert doc["steps"] == 2 and isinstance(doc["train_loss"], float) and isinstance(doc["eval_loss"], float)
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_env), doc["adapter_dir"])
    job = jobs.get(doc["job_id"])  # the foreground run is visible as a job
    assert job.foreground and job.status == jobs.SUCCEEDED and job.pid is not None
    # the name is now taken; prompt tuning under another name works
    assert main(["finetune", "--data", str(data), "--out", "cli-adapter", "--max-steps", "1", "--json"]) == 2
    assert "already exists" in capsys.readouterr().err
    doc = run_json(
        capsys,
        "finetune",
        "--data",
        str(data),
        "--out",
        "cli-prompt",
        "--method",
        "prompt-tuning",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--max-length",
        "64",
        "--json",
    )
    assert (data_dir / "adapters" / "cli-prompt" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_finetune_full_and_selective_save_a_model(tiny_model_env, capsys, tmp_path, data_dir):
    """`--method full` trains every weight, `--method selective --train-blocks 1` only block 1;
    both print the same JSON with `model_dir`, a directory transformers loads as a model."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.helpers import write_sft_rows

    data = write_sft_rows(tmp_path / "d.jsonl")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_env)
    common = ["--data", str(data), "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--json"]
    full = run_json(capsys, "finetune", "--method", "full", "--out", "all-weights", "--lr", "1e-3", *common)
    assert "adapter_dir" not in full and full["method"] == "full" and full["steps"] == 2
    assert full["trainable_params"] == sum(p.numel() for p in base.parameters())
    tuned = AutoModelForCausalLM.from_pretrained(full["model_dir"])
    assert all(
        not torch.equal(a, b)
        for a, b in zip(base.model.layers[0].parameters(), tuned.model.layers[0].parameters(), strict=False)
    )
    assert full["model_dir"].endswith("models-tuned/all-weights") and full["size_mb"] > 0

    chosen = run_json(
        capsys,
        "finetune",
        "--method",
        "selective",
        "--train-blocks",
        "1",
        "--out",
        "block-one",
        "--lr",
        "1e-3",
        *common,
    )
    tuned = AutoModelForCausalLM.from_pretrained(chosen["model_dir"])
    assert chosen["trainable_params"] == sum(p.numel() for p in base.model.layers[1].parameters())
    changed = {
        name
        for (name, a), (_, b) in zip(base.named_parameters(), tuned.named_parameters(), strict=False)
        if not torch.equal(a, b)
    }
    assert changed and all(name.startswith("model.layers.1.") for name in changed)
    assert main(["finetune", "--method", "selective", "--out", "none", "--data", str(data), "--json"]) == 2
    assert "train_blocks" in capsys.readouterr().err
    assert main(["finetune", "--method", "selective", "--train-blocks", "7", "--out", "past", *common]) == 1
    assert "there is no block 7" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--lora-r", "0"], "--lora-r: must be between 1 and 256"),
        (["--epochs", "1", "--max-steps", "3"], "not allowed with"),
        (["--out", "../x"], "invalid adapter name"),
        (["--qlora"], "qlora"),
    ],
)
def test_finetune_bad_flags_are_one_line(tiny_model_env, capsys, tmp_path, extra, needle):
    from tests.helpers import write_sft_rows

    data = write_sft_rows(tmp_path / "d.jsonl")
    argv = ["finetune", "--data", str(data), "--out", "x", *extra]
    if "--out" in extra:
        argv = ["finetune", "--data", str(data), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_finetune_bad_data_fails_before_loading_a_model(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("instruction,output\nfine,ok\n,missing instruction\n")
    assert main(["finetune", "--data", str(bad), "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "instruction" in err


def test_prefs_import_export_json_contracts(capsys, tmp_path, data_dir):
    from pipelines.store import db

    db.dispose_all()
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(
            {
                "prompt": [{"role": "user", "content": "Q"}],
                "chosen": [{"role": "assistant", "content": "good"}],
                "rejected": [{"role": "assistant", "content": "bad"}],
            }
        )
        + "\n{broken\n"
    )
    doc = run_json(capsys, "prefs", "import", str(source), "--json")
    assert doc == {"imported": 1, "errors": [{"line": 2, "error": doc["errors"][0]["error"]}]}
    for fmt, name in (("jsonl", "o.jsonl"), ("parquet", "o.parquet"), ("unpaired", "u.jsonl")):
        doc = run_json(capsys, "prefs", "export", "--out", str(tmp_path / name), "--format", fmt, "--json")
        assert doc["rows"] == (0 if fmt == "unpaired" else 1) and (tmp_path / name).exists()
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert row["chosen"][0]["content"] == "good" and row["rejected"][0]["content"] == "bad"
    assert main(["prefs", "import", str(tmp_path / "missing.jsonl")]) == 2
    db.dispose_all()


@pytest.mark.slow
def test_reward_cli_train_eval_score(tiny_model_env, capsys, data_dir):
    from tests.helpers import ROOT

    sample = str(ROOT / "assets" / "datasets" / "preference_pairs.jsonl")
    doc = run_json(
        capsys,
        "reward",
        "train",
        "--data",
        sample,
        "--out",
        "cli-rm",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--max-length",
        "128",
        "--json",
    )
    assert set(doc) >= {"model_dir", "eval_accuracy", "steps"} and doc["steps"] == 1
    doc = run_json(capsys, "reward", "eval", "--model", "cli-rm", "--data", sample, "--json")
    assert set(doc) >= {"accuracy", "n"} and doc["n"] == 120
    cap = data_dir / "score-capsule.json"
    score = ("reward", "score", "--model", "cli-rm", "--prompt", "Hi", "--response", "Hello", "--json")
    doc = run_json(capsys, *score, "--capsule", str(cap))
    assert isinstance(doc["reward"], float)
    answer = run_json(capsys, "replay", str(cap), "--json")  # the same reward again, from the capsule
    assert answer["match"] is True and answer["replayed"] == {"reward": doc["reward"]}
    judge = next((data_dir / "reward_models" / "cli-rm").rglob("*.safetensors"))
    judge.write_bytes(judge.read_bytes() + b"\0")
    assert main(["replay", str(cap), "--json"]) == 2
    assert "reward model 'cli-rm' has changed" in capsys.readouterr().err
    assert main(["reward", "score", "--model", "missing", "--prompt", "a", "--response", "b", "--json"]) == 2
    assert "no reward model named" in capsys.readouterr().err
    assert main(["reward", "train", "--out", "x", "--json"]) == 2  # neither --data nor --from-store
