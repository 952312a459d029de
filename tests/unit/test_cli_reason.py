"""`python -m pipelines reason run|extract|bench` and `sandbox run`: JSON contracts and exit codes."""

from __future__ import annotations

import json

from pipelines.cli import main


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "exactly one JSON document on stdout"
    return json.loads(out)


def test_extract(capsys):
    assert run_json(capsys, "reason", "extract", "--text", "So the total is $1,750.00.", "--json") == {"answer": 1750.0}
    assert run_json(capsys, "reason", "extract", "--text", "no idea", "--json") == {"answer": None}


def test_run_contract(use_tiny, capsys):
    doc = run_json(
        capsys,
        "reason",
        "run",
        "--question",
        "What is 2 + 2?",
        "--strategies",
        "direct,pal",
        "--max-new-tokens",
        "4",
        "--json",
    )
    assert [r["strategy"] for r in doc["results"]] == ["direct", "pal"]
    for r in doc["results"]:
        assert set(r) >= {"strategy", "output", "program", "answer", "votes", "seconds"}
        assert r["votes"] is None and isinstance(r["seconds"], float)
    assert doc["results"][0]["program"] is None and isinstance(doc["results"][1]["program"], str)


def test_run_with_samples_votes(use_tiny, capsys):
    doc = run_json(
        capsys,
        "reason",
        "run",
        "--question",
        "What is 2 + 2?",
        "--strategies",
        "cot",
        "--samples",
        "2",
        "--max-new-tokens",
        "3",
        "--seed",
        "1",
        "--json",
    )
    assert sum(doc["results"][0]["votes"].values()) == 2


def test_bench_contract(use_tiny, capsys, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text('{"question": "What is 1 + 1?", "answer": 2}\n{"question": "What is 3 + 3?", "answer": 6}\n')
    doc = run_json(
        capsys,
        "reason",
        "bench",
        "--data",
        str(data),
        "--strategies",
        "direct,cot",
        "--limit",
        "1",
        "--max-new-tokens",
        "3",
        "--json",
    )
    assert doc["direct"]["n"] == 1 and 0 <= doc["direct"]["accuracy"] <= 1 and doc["cot"]["n"] == 1 and doc["run_id"]


def test_reason_misuse_is_one_line(use_tiny, capsys, tmp_path):
    assert main(["reason", "run", "--question", "x", "--strategies", "magic", "--json"]) != 0
    assert main(["reason", "run", "--question", " ", "--json"]) != 0
    assert main(["reason", "bench", "--data", str(tmp_path / "missing.jsonl"), "--json"]) != 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["reason", "bench", "--data", str(empty), "--json"]) != 0
    err = capsys.readouterr().err
    assert "--strategies" in err and "no such file" in err and "no usable problems" in err


def test_sandbox_run_exit_codes(capsys, tmp_path):
    good = tmp_path / "good.py"
    good.write_text("def solution():\n    print('hi')\n    return [1, 2.5]\n")
    doc = run_json(capsys, "sandbox", "run", str(good), "--json")
    assert doc == doc | {"ok": True, "result": [1, 2.5], "stdout": "hi\n", "error": None}
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ndef solution():\n    time.sleep(30)\n")
    doc = run_json(capsys, "sandbox", "run", str(slow), "--timeout", "1", "--json")
    assert doc["ok"] is False and "timed out" in doc["error"]  # a failed program is still exit 0
    assert main(["sandbox", "run", str(tmp_path / "nope.py"), "--json"]) != 0
    assert main(["sandbox", "run", str(good), "--timeout", "0", "--json"]) != 0


def test_a_terminated_bench_keeps_its_partial_run(use_tiny, capsys, tmp_path, monkeypatch):
    import os
    import signal

    from pipelines.reasoning import benchmark, solve

    data = tmp_path / "p.jsonl"
    data.write_text("".join(f'{{"question": "What is {n} + 1?", "answer": {n + 1}}}\n' for n in range(3)))
    real_solve, calls = solve.solve, []

    def solve_then_terminate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # SIGTERM arrives while the second problem runs
            os.kill(os.getpid(), signal.SIGTERM)
        return real_solve(*args, **kwargs)

    monkeypatch.setattr(solve, "solve", solve_then_terminate)
    assert (
        main(["reason", "bench", "--data", str(data), "--strategies", "direct", "--max-new-tokens", "2", "--json"]) == 1
    )
    assert "stopped after 1 problems; the partial run was saved" in capsys.readouterr().err
    saved = benchmark.list_runs()[0]
    assert saved["done"] == 1 and saved["complete"] is False and saved["total"] == 3
