"""Distillation on the tiny model: the cut is exact, the job trains a student that rebuilds from the
teacher's weights, the compression lab compares it, and bad input is refused by name."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from pipelines.errors import InvalidParameter
from pipelines.store import jobs
from pipelines.train import distill

IDS = torch.tensor([[5, 17, 33, 2, 90, 41, 7, 8, 13]])


def test_keeping_every_block_changes_nothing(tiny_handle):
    model = tiny_handle.model
    whole = copy.deepcopy(model)
    kept = distill.cut(copy.deepcopy(model), [0, 1])
    with torch.inference_mode():
        assert torch.equal(whole(IDS).logits, kept(IDS).logits)


def test_a_cut_model_is_the_model_without_that_block(tiny_handle):
    """Removing block 0 gives exactly the forward pass that skips it, with or without the KV cache."""
    model = copy.deepcopy(tiny_handle.model).eval()
    student = distill.cut(copy.deepcopy(model), [1])
    assert student.config.num_hidden_layers == 1 and student.model.layers[0].self_attn.layer_idx == 0

    hook = model.model.layers[0].register_forward_hook(lambda m, a, o: (a[0],) if isinstance(o, tuple) else a[0])
    try:
        with torch.inference_mode():
            expected = model(IDS).logits
    finally:
        hook.remove()
    with torch.inference_mode():
        assert torch.allclose(student(IDS).logits, expected, atol=1e-5)
        greedy = student.generate(IDS, max_new_tokens=5, do_sample=False)  # the cache indexes the kept block
        no_cache = student.generate(IDS, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(greedy, no_cache)


def test_blocks_kept_are_the_most_influential_in_model_order(tiny_handle):
    influence = distill.block_influence(tiny_handle.model, IDS)
    assert len(influence) == 2 and all(0 <= value <= 2 for value in influence)
    assert distill.blocks_to_keep([0.9, 0.1, 0.5, 0.7], 2) == [0, 3]
    assert distill.blocks_to_keep([0.9, 0.1, 0.5, 0.7], 4) == [0, 1, 2, 3]
    for count in (0, 5):
        with pytest.raises(InvalidParameter) as caught:
            distill.blocks_to_keep([0.9, 0.1, 0.5, 0.7], count)
        assert caught.value.param == "layers"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"beta": 1.5}, "beta"),
        ({"lmbda": -0.1}, "lmbda"),
        ({"layers": 0}, "layers"),
        ({"answer_tokens": 0}, "answer_tokens"),
        ({"out": "../x"}, "out"),
        ({"out": "distilled-student"}, "out"),  # the bundled student's name is reserved
    ],
)
def test_spec_refusals(kwargs, param):
    with pytest.raises(InvalidParameter) as caught:
        distill.DistillSpec(**{"out": "s", **kwargs})
    assert caught.value.param == param


def _prompts(tmp_path, count: int = 8):
    path = tmp_path / "prompts.jsonl"
    questions = ["Why is the sea salty?", "What is a lever?", "Name a prime.", "What is rain?"]
    path.write_text("".join(json.dumps({"prompt": f"{questions[i % 4]} ({i})"}) + "\n" for i in range(count)))
    return path


@pytest.fixture
def student(tiny_model_env, data_dir, tmp_path):
    spec = distill.DistillSpec(
        out="tiny-student",
        prompts=str(_prompts(tmp_path)),
        layers=1,
        answer_tokens=6,
        max_steps=6,
        batch_size=4,
        learning_rate=1e-2,
        eval_fraction=0.25,
        max_length=96,
    )
    job = jobs.run_foreground("distill", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.SUCCEEDED, jobs.tail_log(job.id)
    return job


@pytest.mark.slow
def test_the_job_distills_a_student_that_rebuilds_from_the_teacher(student, tiny_model_env):
    result = student.result
    assert result["steps"] == 6 and len(result["layers"]) == 1
    assert result["student_parameters"] < result["teacher_parameters"]
    assert result["after"]["held_out_kl"] < result["before"]["held_out_kl"]  # it moved toward the teacher
    path = distill.student_path("tiny-student")
    assert {"student.json", "held_out.jsonl", "adapter_config.json", "meta.json"} <= {p.name for p in path.iterdir()}
    assert len(distill.held_out(path)) == 2 and distill.held_out(path)[0][-1]["role"] == "assistant"
    assert list(distill.offered()) == ["tiny-student"]
    rebuilt, tokenizer, keep = distill.load_student(path, str(tiny_model_env))
    teacher, _ = distill.load_teacher(str(tiny_model_env))
    again = distill.closeness(teacher, rebuilt, tokenizer, distill.held_out(path))
    assert again == pytest.approx(result["after"], rel=1e-4)  # what was saved is what was measured
    assert keep == result["layers"]
    meta = json.loads((path / "meta.json").read_text())
    assert meta["kind"] == "distill" and meta["metrics"]["after"] == pytest.approx(result["after"])
    assert "held-out answers" in distill.made("tiny-student")


@pytest.mark.slow
def test_the_lab_compares_teacher_cut_and_distilled(student, tiny_handle):
    from pipelines.inside import compression

    spec = compression.StudentSpec(student="tiny-student", prompt="The river", new_tokens=4, text="A b c d e f g h.")
    rows = compression.student_comparison(tiny_handle, spec)
    assert [row["name"] for row in rows] == ["teacher", "cut", "distilled"]
    assert rows[0]["greedy_agreement"] == 1.0
    assert rows[1]["parameters"] == rows[2]["parameters"] < rows[0]["parameters"]  # LoRA merged: same shape
    assert all(row["size_mb"] > 0 and row["tokens_per_second"] > 0 for row in rows)


def test_unknown_student_is_refused_with_what_is_offered(tiny_model_env, data_dir):
    with pytest.raises(InvalidParameter, match="offered: none for this model") as caught:
        distill.find("nope")
    assert caught.value.param == "student"


def test_too_few_prompts_are_refused(tiny_model_env, data_dir, tmp_path):
    spec = distill.DistillSpec(out="s", prompts=str(_prompts(tmp_path, 1)), max_steps=1)
    job = jobs.run_foreground("distill", spec.out, spec.to_dict(), echo=False)
    assert job.status == jobs.FAILED and "at least two prompts" in job.message


@pytest.mark.slow
def test_the_distill_command_keeps_its_json_contract(tiny_model_env, data_dir, tmp_path, capsys):
    from pipelines.cli import main

    prompts = str(_prompts(tmp_path))
    flags = ["--prompts", prompts, "--layers", "1", "--answer-tokens", "4", "--max-steps", "1", "--batch-size", "4"]
    assert main(["distill", "--out", "cli-student", *flags, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"student_dir", "steps", "layers", "teacher_parameters", "student_parameters", "before", "after"} <= set(
        document
    )
    assert set(document["after"]) == {"held_out_kl", "held_out_agreement", "general_perplexity"}
    assert main(["distill", "--out", "cli-student", *flags]) == 2  # taken: refused before any model loads
    assert "already exists" in capsys.readouterr().err
    assert main(["distill", "--out", "x", "--prompts", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["distill", "--out", "x", "--layers", "0"]) == 2
    assert main(["compress", "--student", "nope", "--variants", "fp32"]) == 2
    assert "no distilled student named 'nope'" in capsys.readouterr().err
