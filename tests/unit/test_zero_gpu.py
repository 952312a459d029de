"""ZeroGPU wiring: off ZeroGPU nothing changes; on it, the request-level model calls carry
`spaces.GPU`, batching is off and jobs train on CPU.

The real `spaces` package cannot run its ZeroGPU mode here: it asserts a CUDA build of torch and
the Space's device API. So the subprocess below puts a recording stand-in named `spaces` first on
the path (what the decorator was asked, nothing more) and checks what the playground does around
it; the GPU side itself is Hugging Face's, exercised only on a ZeroGPU Space.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pipelines import config, gpu, inside
from pipelines.engine import generation
from pipelines.errors import ConfigError
from pipelines.store import jobs
from pipelines.train import reward
from tests.helpers import ROOT

STAND_IN = textwrap.dedent(
    """
    calls = []

    def GPU(task=None, *, duration=None, size=None):
        def wrap(function):
            calls.append({"name": function.__qualname__, "duration": duration})
            function.zerogpu = None  # the real decorator marks what it wrapped the same way
            return function
        return wrap(task) if callable(task) else wrap
    """
)

PROBE = textwrap.dedent(
    """
    import json
    from pipelines import gpu
    gpu.prepare()
    import spaces
    from pipelines import config, inside
    from pipelines.engine import generation
    from pipelines.store import jobs
    from pipelines.train import reward
    print(json.dumps({
        "decorated": sorted(call["name"] for call in spaces.calls),
        "durations": sorted({call["duration"] for call in spaces.calls}),
        "batching": config.get_settings().batching,
        "job_device": jobs.worker_environment(config.get_settings()).get("PLAYGROUND_DEVICE"),
    }))
    """
)


def test_off_zero_gpu_the_functions_are_the_functions(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setitem(sys.modules, "spaces", None)  # not installed: nothing needs it

    def f() -> int:
        return 1

    assert gpu.task()(f) is f and not gpu.on_zero_gpu()
    gpu.prepare()
    for function in (generation.stream_batch, generation.inspect_next_token, inside.lens, reward.score):
        assert not hasattr(function, "zerogpu")
    config.reset_settings()
    assert jobs.worker_environment(config.get_settings()).get("PLAYGROUND_DEVICE") == os.environ.get(
        "PLAYGROUND_DEVICE"
    )


def test_on_zero_gpu_without_the_spaces_package_the_message_says_what_to_add(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)
    with pytest.raises(ConfigError, match="add `spaces` to requirements.txt"):
        gpu.task()(lambda: None)


def test_on_zero_gpu_model_calls_are_decorated_batching_is_off_and_jobs_use_the_cpu(tmp_path):
    (tmp_path / "spaces.py").write_text(STAND_IN)
    env = {
        **os.environ,
        "SPACES_ZERO_GPU": "true",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "PLAYGROUND_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("PLAYGROUND_BATCHING", None)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # generation (every completion, chat, comparison, RAG answer, reasoning row; the inspector),
    # "Inside the model" (inside.score and reward.score share a name) and reward scoring
    assert found["decorated"] == [
        "attention",
        "evaluate_pairs",
        "inspect_next_token",
        "lens",
        "perplexity",
        "score",
        "score",
        "stream_batch",
    ]
    assert found["durations"] == [60, 120]
    assert found["batching"] is False and found["job_device"] == "cpu"
