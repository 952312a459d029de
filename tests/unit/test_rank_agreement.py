"""`training.ranks_agree` on a real two-process gloo group: equal weights pass, different ones stop
the run before anything is published (rank 0 alone publishes what it holds)."""

from __future__ import annotations

import multiprocessing

import pytest

pytestmark = pytest.mark.slow  # spawns processes


def _rank(rank: int, init_file: str, same: bool, queue) -> None:  # noqa: ANN001 - a spawned rank
    import torch
    import torch.distributed as dist

    from pipelines.train import training

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0 if same else rank)
        model = torch.nn.Linear(4, 2)
        try:
            queue.put((rank, "agree", training.ranks_agree(model)))
        except training.RanksDisagree as error:
            queue.put((rank, "disagree", str(error)))
    finally:
        dist.destroy_process_group()


def _run(tmp_path, same: bool) -> list:
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    init_file = tmp_path / f"init-{same}"
    ranks = [spawn.Process(target=_rank, args=(r, str(init_file), same, queue)) for r in range(2)]
    for process in ranks:
        process.start()
    results = sorted(queue.get(timeout=180) for _ in ranks)
    for process in ranks:
        process.join(timeout=30)
    return results


def test_ranks_with_equal_weights_agree_and_share_one_digest(tmp_path):
    results = _run(tmp_path, same=True)
    assert [status for _, status, _ in results] == ["agree", "agree"]
    first, second = (found for _, _, found in results)
    assert first == second and first["world_size"] == 2 and first["ranks_agree"] is True
    assert len(first["weights_sha256"]) == 64


def test_ranks_with_different_weights_are_refused_on_every_rank(tmp_path):
    results = _run(tmp_path, same=False)
    assert [status for _, status, _ in results] == ["disagree", "disagree"]
    assert "the 2 processes ended with different weights (bias, weight)" in results[0][2]
    assert "nothing was saved" in results[0][2]


def test_one_process_reports_world_size_one():
    import torch

    from pipelines.train import training

    torch.manual_seed(0)
    found = training.ranks_agree(torch.nn.Linear(4, 2))
    assert found["world_size"] == 1 and found["ranks_agree"] is True
    same = training.weights_digest(dict(torch.nn.Linear(4, 2).named_parameters()))
    assert same != found["weights_sha256"]  # other weights, other digest


@pytest.mark.parametrize(
    "environ, refused",
    [
        ({}, None),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, None),
        ({"ACCELERATE_USE_FSDP": "true"}, "FSDP shards the weights"),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "ZeRO stage 3"),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": "{ds3}"}, "ZeRO stage 3"),
        # `accelerate launch --cpu --num_processes 2` without MPI: one process where two were asked for
        ({"ACCELERATE_USE_CPU": "True", "MASTER_PORT": "29500"}, "starts only one without MPI"),
        ({"ACCELERATE_USE_CPU": "True", "MASTER_PORT": "29500", "WORLD_SIZE": "2"}, None),  # torchrun did start them
        ({"ACCELERATE_USE_CPU": "True", "MASTER_PORT": "29500", "PMI_SIZE": "2"}, None),  # so did mpirun
        ({"ACCELERATE_USE_CPU": "True"}, None),  # `--cpu` for one process: fine
    ],
)
def test_setups_that_shard_the_weights_are_refused_before_anything_loads(tmp_path, environ, refused):
    import json

    from pipelines.errors import InvalidParameter
    from pipelines.train import training

    ds3 = tmp_path / "ds.json"
    ds3.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    environ = {k: v.replace("{ds3}", str(ds3)) for k, v in environ.items()}
    if refused is None:
        training.check_distributed_launch(environ)
        return
    with pytest.raises(InvalidParameter, match=refused) as error:
        training.check_distributed_launch(environ)
    assert "--multi_gpu --num_processes N" in str(error.value) or (
        "DeepSpeed ZeRO stage 1 or 2" in str(error.value) and error.value.param == "accelerate config"
    )
