"""Workshops (issue 37): created with a join code, joined by students, their steps and checked
answers recorded, the lecturer's status and CSV; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
import time

import pytest

from pipelines import inside
from pipelines.errors import InvalidParameter
from pipelines.labels import drives
from pipelines.lessons import checks, load_lessons, workshops

PROBABILITY = {
    "question": "p?",
    "compute": "probability",
    "prompt": "LLMs are",
    "token": " cool",
    "tolerance": 1e-7,
    "relative": 0.1,
}


@pytest.fixture(autouse=True)
def fresh_db(store_database):
    """Every test here runs on SQLite and on PostgreSQL (tests/conftest.py: store_database)."""
    yield


def test_a_workshop_gets_a_join_code_and_refuses_what_cannot_work():
    made = workshops.create("Week 1", ["1_decoding"], tabs=["generate", "inside"], now=1_000.0)
    assert len(made.code) == workshops.CODE_LENGTH and set(made.code) <= set(workshops.CODE_ALPHABET)
    assert made.to_json()["link"] == f"/?workshop={made.code}" and made.expires_at == 1_000.0 + 24 * 3600
    assert set(made.to_json()) >= {"name", "code", "link", "lessons", "tabs", "expires_at"}
    with pytest.raises(workshops.WorkshopError, match="exists already"):
        workshops.create("Week 1", ["1_decoding"])
    with pytest.raises(InvalidParameter, match="lesson"):
        workshops.create("Week 2", ["no_such_lesson"])
    with pytest.raises(InvalidParameter, match="the lessons' steps use inside: allow them too"):
        workshops.create("Week 2", ["1_decoding"], tabs=["generate"])
    with pytest.raises(InvalidParameter, match="the lessons' steps use generate, inside"):
        workshops.create("Week 2", ["1_decoding"], tabs=[])  # none ticked allows none (not all)
    with pytest.raises(InvalidParameter, match="at least one lesson"):
        workshops.create("Week 2", [])
    with pytest.raises(InvalidParameter, match="name"):
        workshops.create("../etc", ["1_decoding"])
    with pytest.raises(InvalidParameter, match="expires_hours"):
        workshops.WorkshopSpec(expires_hours=0)
    with pytest.raises(InvalidParameter, match="pinned"):
        workshops.create("Week 3", ["1_decoding"], pinned={"model": "gpt-5"})
    drives.save("week drive")
    with pytest.raises(InvalidParameter, match="label drive is labelled in the preferences tab"):
        workshops.create("Week 4", ["1_decoding"], tabs=["generate", "inside"], drive="week drive")
    with_drive = workshops.create(
        "Week 4", ["1_decoding"], tabs=["generate", "inside", "preferences"], drive="week drive"
    )
    assert with_drive.drive == "week drive" and workshops.get("Week 4").to_json()["drive"] == "week drive"


def test_students_join_by_code_until_the_workshop_ends():
    made = workshops.create("Class", ["1_decoding"], spec=workshops.WorkshopSpec(expires_hours=1), now=1_000.0)
    joined = workshops.join(made.code.lower(), "  Ada   Lovelace ", now=1_100.0)
    assert set(joined) == {"student", "workshop", "lessons", "tabs"} and joined["workshop"] == "Class"
    with pytest.raises(workshops.WorkshopError, match="already called 'Ada Lovelace'"):
        workshops.join(made.code, "Ada Lovelace", now=1_200.0)
    with pytest.raises(workshops.WorkshopError, match="no workshop has this join code"):
        workshops.join("ZZZZZZ", "Bob", now=1_200.0)
    with pytest.raises(InvalidParameter, match="display name"):
        workshops.join(made.code, "   ", now=1_200.0)
    with pytest.raises(workshops.WorkshopError, match="has ended"):
        workshops.join(made.code, "Late", now=1_000.0 + 3600 + 1)


def test_steps_and_checked_answers_make_the_lecturers_view(tmp_path, tiny_handle):
    made = workshops.create("Lab", ["1_decoding", "2_peft"])
    ada = workshops.join(made.code, "Ada")["student"]
    bob = workshops.join(made.code, "Bob")["student"]
    first = load_lessons()[0].steps[0].check
    assert first is not None and "choices" in first
    workshops.record(made.code, ada, "1_decoding", 1, "reached", now=time.time() - 90)
    workshops.record(made.code, ada, "1_decoding", 1, "done", now=time.time() - 30)
    assert workshops.answer(made.code, ada, "1_decoding", 1, first["answer"], handle=tiny_handle) == {"correct": True}
    assert workshops.answer(made.code, bob, "1_decoding", 1, "no, it changes", handle=tiny_handle) == {"correct": False}
    # computed from the model the class uses: the tiny model here, the bundled one in class
    truth = inside.score(tiny_handle, "LLMs are", " cool")["prob"]
    right = workshops.answer(made.code, bob, "2_peft", 1, f"{truth:.6g}", handle=tiny_handle)
    wrong = workshops.answer(made.code, ada, "2_peft", 1, f"{truth * 2:.6g}", handle=tiny_handle)
    assert right == {"correct": True} and wrong == {"correct": False}, "no expected answer unless revealed"
    with pytest.raises(InvalidParameter, match="answer: .* is not a number"):
        workshops.answer(made.code, ada, "2_peft", 1, "lots", handle=tiny_handle)
    with pytest.raises(workshops.WorkshopError, match="has not joined"):
        workshops.answer(made.code, "someone-else", "1_decoding", 1, "x", handle=tiny_handle)
    with pytest.raises(InvalidParameter, match="lessons are 1_decoding, 2_peft"):
        workshops.record(made.code, ada, "3_rlhf", 1, "reached")
    with pytest.raises(InvalidParameter, match="step"):
        workshops.record(made.code, ada, "1_decoding", 99, "reached")
    report = workshops.status("Lab")
    people = {p["name"]: p for p in report["students"]}
    assert set(people["Ada"]) >= {"name", "steps_done", "checks_right", "checks_answered", "last_seen"}
    assert (
        people["Ada"]["steps_done"] == 1
        and people["Ada"]["checks_right"] == 1
        and people["Ada"]["checks_answered"] == 2
    )
    assert people["Bob"]["checks_right"] == 1 and people["Bob"]["checks_answered"] == 2
    step = next(r for r in report["funnel"] if (r["lesson"], r["step"]) == ("1_decoding", 1))
    assert set(step) >= {"lesson", "step", "reached", "done", "checks_right"}
    assert step == {**step, "reached": 2, "done": 1, "checks_right": 1, "checks_answered": 2}
    # the grid: students x steps, each reached step done or not, right or wrong, and the time spent
    grid = {row["name"]: row["steps"] for row in report["grid"]}
    assert len(grid["Ada"]) == len(report["funnel"]) and grid["Ada"][0]["done"] and grid["Ada"][0]["correct"]
    assert grid["Ada"][0]["seconds"] == pytest.approx(60, abs=2)  # reached to done
    assert grid["Bob"][0] == {**grid["Bob"][0], "done": False, "correct": False} and grid["Bob"][1] is None
    assert report["answers"]["1_decoding 1"] == {first["answer"]: 1, "no, it changes": 1}
    out = tmp_path / "lab.csv"
    assert workshops.export_csv("Lab", out) == 4
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["student"] == "Ada" and {r["lesson"] for r in rows} == {"1_decoding", "2_peft"}


def _checked_step(lesson: str) -> int:
    """The number (from 1) of the lesson's first step with a checked question."""
    found = next(item for item in load_lessons() if item.name == lesson)
    return next(number for number, step in enumerate(found.steps, 1) if step.check)


def test_a_revealing_workshop_says_the_expected_answer(tiny_handle):
    made = workshops.create(
        "Open book",
        ["4_finetune_eval"],
        spec=workshops.WorkshopSpec(reveal=True),
        tabs=["finetune", "inside", "generate"],
    )
    student, step = workshops.join(made.code, "Cy")["student"], _checked_step("4_finetune_eval")
    result = workshops.answer(made.code, student, "4_finetune_eval", step, "1", handle=tiny_handle)
    assert result["correct"] is False and result["expected"].replace(",", "").isdigit()
    right = workshops.answer(made.code, student, "4_finetune_eval", step, result["expected"], handle=tiny_handle)
    assert right["correct"] is True


def test_a_lecturer_reveals_answers_when_the_class_has_answered(tiny_handle):
    made = workshops.create("Quiz", ["4_finetune_eval"], tabs=["finetune", "inside", "generate"])
    student, step = workshops.join(made.code, "Di")["student"], _checked_step("4_finetune_eval")
    assert "expected" not in workshops.answer(made.code, student, "4_finetune_eval", step, "7", handle=tiny_handle)
    assert workshops.status("Quiz")["reveal"] is False
    workshops.set_reveal("Quiz", True)
    assert "expected" in workshops.answer(made.code, student, "4_finetune_eval", step, "7", handle=tiny_handle)
    assert workshops.status("Quiz")["reveal"] is True
    workshops.set_reveal("Quiz", False)
    assert "expected" not in workshops.answer(made.code, student, "4_finetune_eval", step, "7", handle=tiny_handle)
    with pytest.raises(workshops.WorkshopError, match="no workshop"):
        workshops.set_reveal("Nope", True)


def test_a_students_browser_is_refused_the_tabs_its_workshop_hides():
    made = workshops.create("Lab tabs", ["1_decoding"], tabs=["generate", "inside"], now=1_000.0)
    assert workshops.allowed_tabs("anon:browser-a", now=1_001.0) is None  # not a student: every tab
    workshops.check_tab("anon:browser-a", "chat", now=1_001.0)
    student = workshops.join(made.code, "Eve", visitor="anon:browser-a", now=1_001.0)["student"]
    assert workshops.allowed_tabs("anon:browser-a", now=1_002.0) == ("Lab tabs", ["generate", "inside"])
    workshops.check_tab("anon:browser-a", "generate", now=1_002.0)
    with pytest.raises(workshops.WorkshopError, match="'Lab tabs' does not use this tab"):
        workshops.check_tab("anon:browser-a", "chat", now=1_002.0)
    workshops.check_tab("anon:browser-b", "chat", now=1_002.0)  # another browser is not in the class
    workshops.check_tab(None, "chat", now=1_002.0)
    # the page restores its membership with a new visitor cookie: the new browser is bound instead
    assert workshops.member(made.code, student, visitor="anon:browser-c", now=1_003.0)
    with pytest.raises(workshops.WorkshopError):
        workshops.check_tab("anon:browser-c", "rag", now=1_003.0)
    workshops.check_tab("anon:browser-a", "rag", now=1_003.0)
    # once the workshop has ended, the browser may use every tab again
    workshops.check_tab("anon:browser-c", "rag", now=1_000.0 + 24 * 3600 + 1)


def test_the_lecturer_sees_who_has_been_idle():
    made = workshops.create("Idle", ["1_decoding"], now=1_000.0)
    fay = workshops.join(made.code, "Fay", now=1_000.0)["student"]
    workshops.join(made.code, "Gus", now=1_000.0)
    workshops.record(made.code, fay, "1_decoding", 1, "reached", now=1_000.0 + workshops.IDLE_SECONDS)
    report = workshops.status("Idle", now=1_000.0 + workshops.IDLE_SECONDS + 10)
    assert report["idle"] == ["Gus"]
    assert [p["idle_seconds"] for p in report["students"]] == [10.0, workshops.IDLE_SECONDS + 10.0]


def test_checks_in_lesson_files_are_validated():
    checks.validate(PROBABILITY, "here")
    for bad, why in [
        ({"question": ""}, "question"),
        ({"question": "q", "choices": ["a"], "answer": "a"}, "2 or more choices"),
        ({"question": "q", "compute": "vibes"}, "compute"),
        ({"question": "q", "compute": "lens_layer", "prompt": "x"}, "needs token"),
    ]:
        with pytest.raises(checks.CheckError, match=why):
            checks.validate(bad, "here")
    assert checks.read_number("31%") == pytest.approx(0.31) and checks.read_number("1,234") == 1234
    assert checks.read_number("5.5e-5") == pytest.approx(5.5e-5)


def test_workshop_commands_keep_their_json_contract(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["workshop", "create", "CLI class", "--lesson", "1_decoding", "--expires-hours", "2", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert set(made) >= {"name", "code", "link", "lessons", "tabs", "expires_at"} and made["lessons"] == ["1_decoding"]
    assert main(["workshop", "create", "Bad", "--lesson", "1_decoding", "--tabs", "chat"]) == 2
    assert main(["workshop", "create", "Bad", "--lesson", "1_decoding", "--expires-hours", "0"]) == 2
    capsys.readouterr()
    workshops.join(made["code"], "Dee")
    assert main(["workshop", "status", "CLI class", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in status["students"]] == ["Dee"] and status["funnel"][0]["lesson"] == "1_decoding"
    assert main(["workshop", "reveal", "CLI class", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"workshop": "CLI class", "reveal": True}
    assert main(["workshop", "reveal", "CLI class", "--hide"]) == 0 and not workshops.get("CLI class").reveal
    assert main(["workshop", "export", "CLI class", "--out", str(tmp_path / "x.csv")]) == 0
    assert main(["workshop", "status", "nope"]) == 2


def test_a_lens_check_finds_the_first_layer_that_predicts_the_token(tiny_handle):
    report = inside.lens(tiny_handle, "The capital of France is")
    final = report["layers"][-1][-1]["id"]
    token = tiny_handle.tokenizer.decode([final])
    found = checks.expected(
        {"question": "q", "compute": "lens_layer", "prompt": "The capital of France is", "token": token}, tiny_handle
    )
    first = next(n for n, row in enumerate(report["layers"]) if row[-1]["id"] == final)
    assert found.value == first and found.accepts(str(first)) and not found.accepts(str(first + 1))
    with pytest.raises(checks.CheckError, match="must be one"):
        checks.expected(
            {"question": "q", "compute": "lens_layer", "prompt": "x y", "token": " unbelievably long"}, tiny_handle
        )
