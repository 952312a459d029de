"""Answer extraction, strategy prompts, solving with every strategy, self-consistency and the benchmark."""

from __future__ import annotations

import json

import pytest

from pipelines.engine.sampling import SamplingParams
from pipelines.reasoning import benchmark, extract, solve, strategies


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 27.", 27),
        ("$1,750", 1750),
        ("1,750.00", 1750),
        ("Answer: 16", 16),
        ("#### 72", 72),
        ("\\boxed{3/4}", 0.75),
        ("She has 3/4 of the pie left.", 0.75),
        ("It needs 16 eggs", 16),
        ("1 1/2 cups", 1.5),
        ("So 5 + 6 = 11. The answer is 11.", 11),
        ("The answer is 8 dollars, not 10.", 8),
        ("The answer is twelve.", 12),
        ("The total is $ 45.50", 45.5),
        ("−5 degrees", -5),
        ("The answer is -3.", -3),
        ("25%", 25),
        ("First 3 + 4 = 7, then 7 * 2 = 14", 14),
        ("The answer is: 1,000,000.", 1_000_000),
        ("0.5", 0.5),
    ],
)
def test_extracts_the_answer_from_real_phrasings(text, expected):
    assert extract.extract_answer(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "I do not know.", None, "no numbers at all", "1/0"])
def test_no_answer_is_none(text):
    assert extract.extract_answer(text) is None


def test_values_and_correctness():
    assert extract.from_value(4) == 4.0 and extract.from_value("42 apples") == 42.0 and extract.from_value([7]) == 7.0
    assert (
        extract.from_value(True) is None
        and extract.from_value({"a": 1}) is None
        and extract.from_value(float("nan")) is None
    )
    assert extract.is_correct(7.0000000001, 7) and not extract.is_correct(None, 7) and not extract.is_correct(6.9, 7)
    assert (
        extract.format_number(7.0) == "7"
        and extract.format_number(None) == "no answer"
        and extract.format_number(2.5) == "2.5"
    )


def test_bundled_prompts_and_problems():
    loaded = strategies.load_all()
    assert [s.key for s in loaded] == ["direct", "cot", "pal"]
    cot = loaded[1]
    assert any(q.startswith("Roger has 5 tennis balls") for q, _ in cot.exemplars)
    assert any(q.startswith("The cafeteria had 23 apples") for q, _ in cot.exemplars)
    assert all("def solution():" in a for _, a in loaded[2].exemplars)
    problems, errors = benchmark.load_problems()
    assert len(problems) >= 40 and not errors
    exemplar_questions = {q for s in loaded for q, _ in s.exemplars}
    assert not exemplar_questions & {p["question"] for p in problems}, "exemplars must not leak into the benchmark"


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"exemplars": [{"question": "q"}]}', "exemplar 1"),
        ('{"max_new_tokens": 0}', "max_new_tokens"),
        ('{"system": 3}', "system"),
    ],
)
def test_edited_prompts_are_validated(text, message):
    with pytest.raises(ValueError, match=message):
        strategies.parse("cot", text)


def test_strategy_keys():
    assert strategies.parse_keys("pal, direct,pal") == ["pal", "direct"]
    with pytest.raises(ValueError):
        strategies.parse_keys("direct,magic")


def test_program_extraction_and_voting():
    reply = "Here you go:\n```python\ndef solution():\n    return 2 + 2\n```\nDone."
    assert solve.extract_program(reply) == "def solution():\n    return 2 + 2"
    assert solve.extract_program("```\nprint(1)\n```") == "print(1)"
    assert solve.extract_program("def solution():\n    return 3") == "def solution():\n    return 3"
    assert (
        solve.extract_program("```python\ndef solution():\n    return 1") == "def solution():\n    return 1"
    )  # cut off
    answer, votes = solve.vote([4.0, 5.0, 4.0, None])
    assert answer == 4.0 and votes == {"4": 2, "5": 1, "no answer": 1}
    assert solve.vote([None, None]) == (None, {"no answer": 2})


def test_bad_inputs_are_clear(use_tiny):
    params = SamplingParams(temperature=0)
    with pytest.raises(ValueError, match="empty"):
        solve.check_inputs("   ", 1, params)
    with pytest.raises(ValueError, match="temperature above 0"):
        solve.check_inputs("2+2?", 3, params)
    with pytest.raises(ValueError, match="samples"):
        solve.check_inputs("2+2?", 99, params)
    with pytest.raises(ValueError, match="limit"):
        solve.check_inputs("x" * 5000, 1, params)


def test_every_strategy_in_one_batch_with_the_sandbox(use_tiny):
    pal_that_works = strategies.parse("pal", {"system": "Write code.", "exemplars": [], "max_new_tokens": 4})
    chosen = [strategies.load("direct"), strategies.load("cot"), pal_that_works]
    done_flags, results = [], []
    for results in solve.stream_solve(
        use_tiny, "What is 2 + 2?", chosen, SamplingParams(temperature=0), gold=4, token_cap=6
    ):
        done_flags.append(all(r.done for r in results))
    assert done_flags[0] is False and done_flags[-1] is True  # streamed first, answered last
    assert [r.strategy for r in results] == ["direct", "cot", "pal"] and all(r.done for r in results)
    assert all(1 <= r.samples[0].tokens <= 6 for r in results)
    pal = results[2]
    assert pal.program is not None and pal.samples[0].run is not None  # the random model's text went to the sandbox
    assert pal.samples[0].run["ok"] is False and pal.answer is None and pal.correct is False
    doc = pal.to_json()
    assert set(doc) >= {"strategy", "output", "program", "answer", "votes", "seconds"} and doc["error"]


def test_self_consistency_samples_and_votes(use_tiny):
    results = solve.solve(
        use_tiny,
        "What is 2 + 2?",
        [strategies.load("direct")],
        SamplingParams(temperature=1.0, seed=5),
        samples=3,
        token_cap=5,
    )
    direct = results[0]
    assert len(direct.samples) == 3 and sum(direct.votes.values()) == 3
    assert len({s.output for s in direct.samples}) > 1, "each sample has its own seed"
    assert direct.to_json()["samples"] and len(direct.to_json()["samples"]) == 3


def test_benchmark_saves_and_reloads_runs_and_keeps_stopped_ones(use_tiny, tmp_path):
    data = tmp_path / "mine.jsonl"
    rows = [
        {"question": "What is 1 + 1?", "answer": 2},
        {"question": "What is 2 + 3?", "answer": "5"},
        {"question": "", "answer": 1},
        {"question": "Bad answer", "answer": "many"},
        "not an object",
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    problems, errors = benchmark.load_problems(data)
    assert [p["answer"] for p in problems] == [2.0, 5.0] and [e["line"] for e in errors] == [3, 4, 5, 6]
    chosen = [strategies.load("direct"), strategies.load("pal")]
    record = benchmark.run(
        use_tiny, problems, chosen, SamplingParams(temperature=0), token_cap=4, data_name="mine.jsonl"
    )
    assert record["complete"] and set(record["summary"]) == {"direct", "pal"}
    assert record["summary"]["direct"]["n"] == 2 and 0 <= record["summary"]["pal"]["accuracy"] <= 1
    assert benchmark.load_run(record["id"])["items"] == record["items"]
    assert benchmark.list_runs()[0]["id"] == record["id"]

    iterator = benchmark.iter_run(use_tiny, problems, chosen, SamplingParams(temperature=0), token_cap=4)
    first = next(iterator)
    iterator.close()  # the Stop button
    stopped = benchmark.load_run(first["id"])
    assert not stopped["complete"] and len(stopped["items"]) == 1
    with pytest.raises(ValueError):
        benchmark.load_run("../etc/passwd")
