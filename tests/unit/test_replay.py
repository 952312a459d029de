"""Replay capsules on the tiny model: each kind replays token for token; what would make a replay
another experiment (other weights, a changed adapter or collection, an edited capsule) is refused
with the reason; what can only move the numbers (another CPU kind) is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.replay import capsules
from tests.helpers import ROOT, make_lora_adapter


def _json(capsys, *argv: str, status: int = 0) -> dict:
    assert main(list(argv)) == status
    return json.loads(capsys.readouterr().out)


def _replayed(capsys, path: Path, status: int = 0) -> dict:
    return _json(capsys, "replay", str(path), "--json", status=status)


def _resealed(path: Path, change) -> Path:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(capsules.seal(document)))
    return path


@pytest.mark.parametrize(
    "sampling",
    [["--temperature", "0"], ["--temperature", "0.9", "--top-k", "40", "--seed", "11"], ["--temperature", "1.2"]],
    ids=["greedy", "seeded", "fresh-seed"],
)
def test_a_generation_replays_token_for_token(use_tiny, capsys, tmp_path, sampling):
    cap = tmp_path / "cap.json"
    made = _json(
        capsys,
        "generate",
        "--prompt",
        "Once upon",
        "--max-new-tokens",
        "12",
        *sampling,
        "--capsule",
        str(cap),
        "--json",
    )
    document = json.loads(cap.read_text())
    assert document["kind"] == "generate" and document["inputs"]["sampler"]["params"]["seed"] == made["seed"]
    assert [s["step"] for s in document["inputs"]["sampler"]["chain"]] == [
        "repetition_penalty",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
    ]
    assert set(document) >= {"model", "adapter", "engine", "chat_template_sha256", "machine", "libraries", "sha256"}
    assert len(document["model"]["weights_sha256"]) == 64 and document["libraries"]["torch"]
    answer = _replayed(capsys, cap)
    assert answer["kind"] == "generate" and answer["match"] is True and "reason" not in answer
    assert answer["replayed"]["token_ids"] == [t["id"] for t in made["tokens"]] == answer["original"]["token_ids"]


def test_a_chat_turn_with_an_adapter_replays_and_a_changed_adapter_is_refused(
    fresh_tiny_handle, tokenizer, data_dir, capsys, tmp_path
):
    adapter = make_lora_adapter(tokenizer, data_dir / "adapters", "tutor")
    conversation = tmp_path / "c.json"
    conversation.write_text(json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]))
    cap = tmp_path / "chat.json"
    flags = ("--messages", str(conversation), "--adapter", "tutor", "--max-new-tokens", "8", "--seed", "5")
    reply = _json(capsys, "chat", *flags, "--capsule", str(cap), "--json")
    document = json.loads(cap.read_text())
    assert document["adapter"]["name"] == "tutor" and document["inputs"]["messages"][0]["role"] == "system"
    answer = _replayed(capsys, cap)
    assert answer["match"] and answer["replayed"]["text"] == reply["content"]

    (adapter / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text() + " ")
    assert main(["replay", str(cap), "--json"]) == 2
    assert "adapter 'tutor' has changed" in capsys.readouterr().err


def test_a_rag_answer_replays_and_a_changed_collection_is_refused(use_tiny, capsys, tmp_path, data_dir):
    from pipelines.rag import store

    notes = tmp_path / "notes.md"
    notes.write_text("# Harbour\n\nThe Corran lighthouse was repainted red in 1987 by volunteers.\n")
    store.create("docs", chunk_size=64, overlap=8)
    store.ingest("docs", [(str(notes), "notes.md")])
    cap = tmp_path / "rag.json"
    question = ("rag", "query", "--collection", "docs", "--question", "When was the lighthouse repainted?")
    _json(capsys, *question, "--k", "2", "--max-new-tokens", "6", "--capsule", str(cap), "--json")
    document = json.loads(cap.read_text())
    assert document["inputs"]["retrieval"] == {"mode": "hybrid", "k": 2} and document["inputs"]["passages"]
    assert _replayed(capsys, cap)["match"] is True

    more = tmp_path / "more.md"
    more.write_text("# Lighthouse\n\nThe lighthouse keeper repainted the lighthouse again in 2001.\n")
    store.ingest("docs", [(str(more), "more.md")])
    assert main(["replay", str(cap), "--json"]) == 2
    assert "now gives other passages" in capsys.readouterr().err


def test_a_reasoning_run_replays(use_tiny, capsys, tmp_path):
    cap = tmp_path / "reason.json"
    argv = ("reason", "run", "--question", "What is 2 plus 3?", "--strategies", "direct,pal", "--max-new-tokens", "8")
    _json(capsys, *argv, "--samples", "2", "--capsule", str(cap), "--json")
    document = json.loads(cap.read_text())
    assert document["inputs"]["samples"] == 2 and document["inputs"]["sampler"]["params"]["seed"] is not None
    answer = _replayed(capsys, cap)
    assert answer["match"] is True and [r["strategy"] for r in answer["replayed"]["results"]] == ["direct", "pal"]


def test_views_and_evaluations_replay_from_a_command_capsule(use_tiny, capsys, tmp_path):
    """inspect, compress, scale, reward eval|score, align eval and reason bench keep their arguments, the files
    they read and the JSON they print; timings and saved runs' ids are named, not compared."""
    scale = tmp_path / "scale.json"
    assert main(["scale", "--capsule", str(scale)]) == 0  # lines on stdout, the capsule beside them
    capsys.readouterr()
    document = json.loads(scale.read_text())
    assert document["kind"] == "command" and document["inputs"]["argv"] == ["scale"]
    assert document["model"]["weights_sha256"] is None  # arithmetic: no model was loaded or needed
    assert _replayed(capsys, scale)["match"] is True

    view = tmp_path / "perplexity.json"
    made = _json(capsys, "inspect", "perplexity", "--text", "The cat sat.", "--json", "--capsule", str(view))
    assert json.loads(view.read_text())["inputs"]["argv"] == ["inspect", "perplexity", "--text", "The cat sat."]
    answer = _replayed(capsys, view)
    assert answer["match"] is True and answer["replayed"]["perplexity"] == made["perplexity"]

    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"question": "What is 2 plus 3?", "answer": 5}\n')
    bench = tmp_path / "bench.json"
    flags = ("--data", str(problems), "--strategies", "direct", "--max-new-tokens", "8")
    _json(capsys, "reason", "bench", *flags, "--json", "--capsule", str(bench))
    document = json.loads(bench.read_text())
    assert document["inputs"]["files"] == [{"path": str(problems.resolve()), "sha256": capsules.sha256_of(problems)}]
    answer = _replayed(capsys, bench)
    assert answer["match"] is True and {"mean_seconds", "run_id"} <= set(answer["not_compared"])
    problems.write_text('{"question": "What is 2 plus 2?", "answer": 4}\n')
    assert main(["replay", str(bench), "--json"]) == 2
    assert "problems.jsonl has changed since the capsule was made" in capsys.readouterr().err


def test_a_command_capsule_replays_only_views_and_evaluations(tmp_path, capsys):
    """A seal is only a checksum: a capsule rewritten to run a training or a sandbox is refused, not run."""
    scale = tmp_path / "scale.json"
    assert main(["scale", "--json", "--capsule", str(scale)]) == 0
    capsys.readouterr()
    for argv in (["finetune", "--out", "x"], ["sandbox", "run", "--code", "print(1)"], ["replay", str(scale)]):
        _resealed(scale, lambda d, argv=argv: d["inputs"].update(argv=argv))
        assert main(["replay", str(scale), "--json"]) == 2
        assert "is not replayed from a capsule" in capsys.readouterr().err


@pytest.fixture
def capsule(use_tiny, capsys, tmp_path) -> Path:
    cap = tmp_path / "cap.json"
    _json(
        capsys,
        "generate",
        "--prompt",
        "Once upon",
        "--max-new-tokens",
        "6",
        "--seed",
        "2",
        "--capsule",
        str(cap),
        "--json",
    )
    return cap


def test_an_edited_capsule_is_refused(capsule, capsys):
    document = json.loads(capsule.read_text())
    document["inputs"]["sampler"]["params"]["temperature"] = 0.1
    capsule.write_text(json.dumps(document))
    assert main(["replay", str(capsule), "--json"]) == 2
    assert "changed after it was made" in capsys.readouterr().err


def test_a_capsule_of_other_weights_is_refused(capsule, capsys):
    _resealed(capsule, lambda d: d["model"].update(id="SmolLM2-1.7B", weights_sha256="ab" * 32))
    assert main(["replay", str(capsule), "--json"]) == 2
    err = capsys.readouterr().err
    assert "made with model 'SmolLM2-1.7B'" in err and "start it with that model" in err


def test_another_cpu_kind_is_named_when_it_still_matches_and_why_when_not(capsule, capsys):
    _resealed(capsule, lambda d: d["machine"].update(cpu_kind="avx2", threads=64))
    answer = _replayed(capsys, capsule)
    assert answer["match"] and "made on a avx2 CPU" in answer["note"] and "64 threads" in answer["note"]
    _resealed(capsule, lambda d: d["result"].update(token_ids=[1, 2, 3]))
    answer = _replayed(capsys, capsule, status=1)
    assert answer["match"] is False and "avx2" in answer["reason"]


def test_a_different_result_on_the_same_machine_is_reported_not_explained_away(capsule, capsys):
    _resealed(capsule, lambda d: d["result"].update(text="something else"))
    answer = _replayed(capsys, capsule, status=1)
    assert answer["match"] is False and "please report it" in answer["reason"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "nested"),
        (b'{"capsule": 9, "kind": "generate"}', "format 9"),
        (b'{"capsule": 1, "kind": "dream"}', "kind 'dream'"),
        (b'{"hello": 1}', "not a capsule"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_capsule_files_get_one_clear_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    assert main(["replay", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_capsule_paths_are_checked_before_the_run(tmp_path, capsys):
    assert main(["generate", "--prompt", "x", "--capsule", str(tmp_path / "no" / "cap.json")]) == 2
    assert "--capsule" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert main(["replay", str(tmp_path / "missing.json")]) == 2
    assert "no such capsule file" in capsys.readouterr().err


def test_a_fine_tuning_job_replays_to_the_same_weights_and_changed_data_is_refused(
    tiny_model_env, capsys, tmp_path, data_dir
):
    from tests.helpers import write_sft_rows

    data = write_sft_rows(tmp_path / "d.jsonl")
    cap = tmp_path / "job.json"
    flags = ("--data", str(data), "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--seed", "7")
    trained = _json(capsys, "finetune", *flags, "--out", "tuned", "--capsule", str(cap), "--json")
    document = json.loads(cap.read_text())
    assert document["inputs"]["job"] == "finetune" and document["inputs"]["spec"]["seed"] == 7
    assert document["inputs"]["data"] == [
        {"field": "data", "path": str(data.resolve()), "sha256": capsules.sha256_of(data)}
    ]
    assert set(document["result"]["weights_sha256"]) == {"adapter_dir"} and trained["adapter_dir"]
    answer = _replayed(capsys, cap)
    assert answer["match"] is True, answer
    assert answer["replayed"]["weights_sha256"] == document["result"]["weights_sha256"]
    from playground import jobs_panel  # the job panel's Save capsule: the same capsule for the same job

    saved = json.loads(Path(jobs_panel.save_capsule(trained["job_id"])["value"]).read_text())
    assert [saved[k] for k in ("kind", "model", "inputs", "result")] == [
        document[k] for k in ("kind", "model", "inputs", "result")
    ]
    _the_capsule_loads_back_into_the_fine_tuning_form(cap)

    data.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")
    assert main(["replay", str(cap), "--json"]) == 2
    assert "data file d.jsonl has changed" in capsys.readouterr().err


def _the_capsule_loads_back_into_the_fine_tuning_form(cap: Path) -> None:
    """The jobs panel's Load capsule: every setting the form has, from the capsule's spec; the data named."""
    import gradio as gr

    from pipelines.train.finetune import FinetuneSpec
    from playground import jobs_panel
    from playground.spec_controls import controls

    names = ["seed", "max_steps", "batch_size", "max_length", "method", "target_modules", "out", "data"]
    with gr.Blocks():
        settings = controls(FinetuneSpec, names[:-1]) | {"data": gr.File()}
    updates, _, note = jobs_panel.form_from_capsule(str(cap), ("finetune",), settings)
    shown = dict(zip(names, updates, strict=True))
    assert [shown[n]["value"] for n in ("seed", "max_steps", "batch_size", "max_length", "out")] == [
        7,
        2,
        4,
        64,
        "tuned",
    ]
    assert shown["data"] == gr.update() and "trained on **d.jsonl**" in note and "press Start" in note
    with pytest.raises(gr.Error, match="load it in the panel that trains finetune jobs"):
        jobs_panel.form_from_capsule(str(cap), ("reward",), settings)


@pytest.mark.heavy  # ~35 s: four trainings, each twice (fine-tuning's replay runs in `make test`)
def test_reward_dpo_rloo_and_grpo_jobs_replay_to_the_same_weights(tiny_model_env, capsys, tmp_path, data_dir):
    """Each job kind trained with --capsule, then trained again from the capsule: the same bytes."""
    pairs = ROOT / "assets" / "datasets" / "preference_pairs.jsonl"
    problems = tmp_path / "problems.jsonl"
    problems.write_text(
        "".join(json.dumps({"question": f"What is {i} + 2?", "answer": i + 2}) + "\n" for i in range(8))
    )
    reward_file = tmp_path / "reward.py"  # varies with the answer's length: groups are never constant
    reward_file.write_text("def reward(prompt, completion, answer):\n    return len(completion) / 10 + (answer == 7)\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say something about {w}."}) + "\n" for w in ("cats", "tea")))
    small = ("--max-steps", "1", "--batch-size", "4", "--max-length", "128")
    sampled = ("--max-steps", "1", "--num-generations", "2", "--prompts-per-step", "2", "--max-completion-length", "8")
    runs = {
        "reward": ("reward", "train", "--data", str(pairs), "--out", "rm", *small),
        "dpo": ("align", "dpo", "--data", str(pairs), "--out", "pref", *small),
        "rloo": ("align", "rloo", "--prompts", str(prompts), "--reward-model", "rm", "--out", "rl", *sampled),
        "grpo": (
            "align",
            "grpo",
            "--prompts",
            str(problems),
            "--reward",
            "correctness",
            "--reward-file",
            str(reward_file),
            "--held-out",
            "2",
            "--out",
            "gr",
            *sampled,
        ),
    }
    for kind, argv in runs.items():
        cap = tmp_path / f"{kind}.json"
        _json(capsys, *argv, "--capsule", str(cap), "--json")
        document = json.loads(cap.read_text())
        assert document["inputs"]["job"] == kind and document["result"]["weights_sha256"], kind
        answer = _replayed(capsys, cap)
        assert answer["match"] is True, (kind, answer)
    rloo = json.loads((tmp_path / "rloo.json").read_text())
    assert {"field": "reward_model", "name": "rm", "sha256": rloo["inputs"]["data"][-1]["sha256"]} in rloo["inputs"][
        "data"
    ]


def test_a_job_trained_on_the_label_store_says_why_it_cannot_be_replayed(capsule, capsys):
    def from_the_store(document: dict) -> None:
        document.update(kind="job", engine="trl", result={"weights_sha256": {}})
        document["inputs"] = {
            "job": "dpo",
            "spec": {"out": "x", "data": None},
            "data": [{"field": "data", "path": None, "source": "the label store"}],
        }

    _resealed(capsule, from_the_store)
    assert main(["replay", str(capsule), "--json"]) == 2
    assert "trained on the label store" in capsys.readouterr().err
