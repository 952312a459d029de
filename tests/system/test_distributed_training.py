"""Training under `accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs: two
real processes, DDP over gloo on CPU. (`--cpu --num_processes 2` starts one process unless MPI runs
it: the CLI refuses it and says which command to use; tested here too.)

The documentation (docs/cli.md) promises that the CLI's training commands run distributed unchanged. Here each runs
as two ranks on the tiny model: one job row, one published result, one JSON document on stdout,
the ranks' weights bit-identical after training (each rank's digest is gathered and compared),
and the published weights are those weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pipelines.store import jobs
from pipelines.train import training
from tests.helpers import ROOT, free_port, write_sft_rows

pytestmark = pytest.mark.slow

PAIRS = str(ROOT / "assets" / "datasets" / "preference_pairs.jsonl")


def _launch(
    args: list[str], data_dir: Path, model: Path, how: tuple[str, ...] = ("--multi_gpu",), ok: bool = True
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PLAYGROUND_DATA_DIR": str(data_dir),
        "PLAYGROUND_MODEL": str(model),
        "OMP_NUM_THREADS": "1",  # two ranks on two cores
        "HF_HOME": str(data_dir / "hf-home"),  # no accelerate config file of this machine's user
    }
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch"),
        *how,
        *("--num_processes", "2", "--num_machines", "1"),
        *("--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())),
        *("-m", "pipelines", *args, "--json"),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert (done.returncode == 0) == ok, done.stderr[-4000:]
    return done


def _one_document(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout  # rank 1 prints nothing
    return json.loads(lines[0])


def _check_one_job(kind: str) -> jobs.JobInfo:
    found = jobs.list_jobs()
    assert [(j.kind, j.status) for j in found] == [(kind, jobs.SUCCEEDED)]  # rank 1 registered nothing
    return found[0]


def test_finetune_on_two_processes(tiny_model_dir, data_dir, tmp_path):
    rows = write_sft_rows(tmp_path / "sft.jsonl", n=24)
    done = _launch(
        [
            *("finetune", "--data", str(rows), "--out", "ddp-lora"),
            *("--max-steps", "3", "--batch-size", "2", "--max-length", "64"),
            *("--eval-samples", "1", "--eval-max-new-tokens", "4"),
        ],
        data_dir,
        tiny_model_dir,
    )
    doc = _one_document(done.stdout)
    assert doc["world_size"] == 2 and doc["ranks_agree"] is True and doc["steps"] == 3
    job = _check_one_job("finetune")
    assert doc["job_id"] == job.id and job.result["world_size"] == 2
    adapters = sorted(p.name for p in (data_dir / "adapters").iterdir())
    assert adapters == ["ddp-lora"] and Path(doc["adapter_dir"]).name == "ddp-lora"
    saved = load_file(str(Path(doc["adapter_dir"]) / "adapter_model.safetensors"))
    assert training.weights_digest(saved) == doc["weights_sha256"]  # what was published is what both ranks hold
    assert "ranks hold" not in done.stderr and "Traceback" not in done.stderr


def test_cpu_flag_with_several_processes_is_refused_with_the_command_that_works(tiny_model_dir, data_dir, tmp_path):
    rows = write_sft_rows(tmp_path / "sft.jsonl", n=8)
    done = _launch(["finetune", "--data", str(rows), "--out", "x"], data_dir, tiny_model_dir, how=("--cpu",), ok=False)
    assert done.stdout == "" and "starts only one without MPI" in done.stderr and "--multi_gpu" in done.stderr
    assert jobs.list_jobs() == []  # refused before anything was registered or loaded


def _trained_on_two(command: list[str], kept: str, data_dir: Path, model: Path) -> dict:
    """Run a pair-data training command on two processes; its JSON, checked against what it saved."""
    flags = ["--data", PAIRS, "--max-steps", "2", "--batch-size", "2", "--max-length", "96"]
    doc = _one_document(_launch([*command, *flags], data_dir, model).stdout)
    assert doc["world_size"] == 2 and doc["ranks_agree"] is True and doc["steps"] == 2
    saved = load_file(str(Path(doc[kept]) / "adapter_model.safetensors"))
    assert training.weights_digest(saved) == doc["weights_sha256"]
    return doc


@pytest.mark.heavy
def test_reward_model_and_dpo_on_two_processes(tiny_model_dir, data_dir):
    """Both evaluate before training: the case where DDP was silently off (see training.evaluate_before_training)."""
    _trained_on_two(["reward", "train", "--out", "ddp-rm"], "model_dir", data_dir, tiny_model_dir)
    _check_one_job("reward")
    _trained_on_two(["align", "dpo", "--out", "ddp-dpo"], "adapter_dir", data_dir, tiny_model_dir)
    assert sorted(j.kind for j in jobs.list_jobs()) == ["dpo", "reward"]
