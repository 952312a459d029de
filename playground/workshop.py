"""A class run from the app (pipelines/lessons/workshops.py): the endpoints students' pages and
scripts call, and the Lessons tab's panels — a student's join box and step checks, the lecturer's
live view of the class.

`/workshop_join(code, name)` -> {"student", "workshop", "lessons", "tabs"} and
`/workshop_answer(code, student, lesson, step, answer)` -> {"correct": bool | None, "expected"?} are
contracts. Refusals (a wrong code, an ended workshop, an unknown student) come back as the error
family's messages through the app's one translator.
"""

from __future__ import annotations

import html
import re
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import lessons
from pipelines.labels import drives
from pipelines.lessons import workshops

from . import label
from .controls import MODEL_EVENTS, SamplingControls, to_params
from .errors import UserError
from .guard import admin_only
from .pickers import LiveDropdown
from .sidebar import Shared, signed_in_user, visitor_key
from .spec_controls import build_spec, controls


def workshop_join(code: str, name: str, request: gr.Request | None = None) -> dict[str, Any]:
    """Join a workshop with its code and a display name; keep the returned student id. The tabs the
    workshop does not use are refused to this browser from now on. Signed in, the login is the name."""
    return workshops.join(code, signed_in_user(request) or name, visitor=visitor_key(request))


def workshop_answer(code: str, student: str, lesson: str, step: int, answer: str) -> dict[str, Any]:
    """Answer a step's check; {"correct": true/false (null: the step has no check), "expected" when revealed}."""
    return workshops.answer(code, student, lesson, int(step), answer)


def workshop_progress(code: str, student: str, lesson: str, step: int, kind: str) -> dict[str, Any]:
    """A student reached a step (kind "reached") or finished it ("done")."""
    workshops.record(code, student, lesson, int(step), kind)
    return {"recorded": kind}


@admin_only("see a workshop's students")
def workshop_status(name: str, request: gr.Request | None = None) -> dict[str, Any]:
    """The lecturer's view as JSON (`workshop status NAME --json`): students, funnel, answers, who is idle."""
    return workshops.status(name)


def register(demo: gr.Blocks) -> None:
    """The workshop endpoints (answers may compute from the model: they share its concurrency group)."""
    gr.api(workshop_join, api_name="workshop_join")
    gr.api(workshop_progress, api_name="workshop_progress")
    gr.api(workshop_answer, api_name="workshop_answer", **MODEL_EVENTS)
    gr.api(workshop_status, api_name="workshop_status")


# --- the student's panel and the lecturer's, in the Lessons tab --------------------------------------


def _lesson_titles(ids: list[str]) -> list[str]:
    by_name = {lesson.name: lesson.title for lesson in lessons.load_lessons()}
    return [by_name[i] for i in ids if i in by_name]


def _lesson_id(title: str | None) -> str:
    return lessons.find(title).name if title else ""


def code_from_link(request: gr.Request | None = None) -> str:
    """The join code of a workshop link (`/?workshop=CODE`), to fill the student's box."""
    params = getattr(request, "query_params", None) or {}
    return str(params.get("workshop", "") or "")[:16]


def tab_updates(allowed: list[str] | None) -> list[Any]:
    """The visibility of each tab a workshop may hide, in `TABS` order (None: every tab shown).
    "hidden", not False: Gradio 6.31 leaves a tab's button on the page after `visible=False`."""
    return [gr.update(visible=True if allowed is None or tab in allowed else "hidden") for tab in lessons.TABS]


def login_name(request: gr.Request | None = None) -> Any:
    """A signed-in student joins under their login: the name box shows it and cannot be changed."""
    user = signed_in_user(request)
    return gr.update(value=user, interactive=False) if user else gr.update()


def join_from_page(code: str, name: str, joined: dict[str, Any] | None, request: gr.Request | None = None):
    """Join (or keep the membership this browser already has): the lesson picker shows only the
    workshop's lessons, the tabs it does not use are hidden (and refused: `tab_guard`), and the
    sidebar takes what the workshop pins."""
    if joined and joined.get("code", "").upper() == (code or "").strip().upper() and joined.get("student"):
        member = joined
    else:
        name = signed_in_user(request) or name  # signed in (OAuth on a Space): the login, not a typed name
        found = workshops.join(code, name, visitor=visitor_key(request))
        member = {"code": (code or "").strip().upper(), "name": " ".join((name or "").split()), **found}
    shown, workshop = _shown(member)
    return (*shown, *drive_updates(workshop.drive))


def _shown(member: dict[str, Any]) -> tuple[tuple[Any, ...], Any]:
    """What a member's page shows (the membership kept, the note, the lessons, the pinned adapter and
    sampling, the tabs), and the workshop: shared by joining and by a reload's rejoin."""
    workshop = workshops.by_code(member["code"])
    titles = _lesson_titles(workshop.lessons)
    pinned = workshop.pinned
    note = (
        f"You are in **{html.escape(workshop.name)}** as **{html.escape(member['name'])}**: "
        f"{len(titles)} lesson{'s' if len(titles) != 1 else ''}. Your answers go to the lecturer only."
    )
    shown = (
        member,
        note,
        gr.update(choices=titles, value=titles[0] if titles else None),
        pinned.get("adapter") or gr.update(),
        *SamplingControls.updates_for(dict(pinned.get("sampling") or {})),
        *tab_updates(workshop.tabs),
    )
    return shown, workshop


def drive_updates(drive: str | None) -> list[Any]:
    """The Label tab's mode and drive for a workshop with a label drive: its students label it."""
    if not drive:
        return [gr.update(), gr.update()]
    return [label.MODES[3], gr.update(choices=drives.names(), value=drive)]


def rejoin(joined: dict[str, Any] | None, request: gr.Request | None = None):
    """After a reload: the membership this browser keeps, shown again while its workshop is open."""
    unchanged = [gr.skip() for _ in SamplingControls.updates_for({})]
    kept = [gr.skip(), gr.skip()]  # the Label tab's mode and drive: the page restores its own (remembered)
    if not joined or not joined.get("student"):
        return (gr.skip(), gr.skip(), gr.skip(), gr.skip(), *unchanged, *[gr.skip() for _ in lessons.TABS], *kept)
    if not workshops.member(joined.get("code", ""), joined["student"], visitor=visitor_key(request)):
        return (None, "", gr.skip(), gr.skip(), *unchanged, *tab_updates(None), *kept)  # ended or removed: forgotten
    return (*_shown(joined)[0], *kept)


def pinned_for(joined: dict[str, Any] | None) -> dict[str, Any]:
    """What the student's open workshop pins (adapter, sampling), for "Set up this step"; {} outside one."""
    return workshops.pinned(joined.get("code", "")) if joined else {}


def step_check(title: str | None, index: int, joined: dict[str, Any] | None) -> tuple[Any, ...]:
    """The step's check (question; a free answer box, or the choices as buttons; Check) and "I did
    this step", shown to workshop students only; the step recorded as reached."""
    hidden = (
        gr.update(visible=False),
        gr.update(visible=False, value=""),
        gr.update(visible=False, value=None),
        gr.update(visible=False),
        "",
    )
    if not title or not joined:
        return (*hidden, gr.update(visible=False))
    lesson = lessons.find(title)
    number = max(0, min(int(index or 0), len(lesson.steps) - 1)) + 1
    workshops.record(joined["code"], joined["student"], lesson.name, number, "reached")
    check = lesson.steps[number - 1].check
    if check is None:
        return (*hidden, gr.update(visible=True))
    question = gr.update(value=f"**Check:** {html.escape(check['question'])}", visible=True)
    chosen = "choices" in check
    free = gr.update(visible=not chosen, value="")
    choices = gr.update(visible=chosen, choices=list(check.get("choices", [])), value=None)
    return (question, free, choices, gr.update(visible=True), "", gr.update(visible=True))


def submit_answer(title: str | None, index: int, given: str, choice: str | None, joined: dict[str, Any] | None) -> str:
    """The answer (the box's, or the chosen choice on a multiple-choice step) checked and recorded."""
    if not joined:
        raise UserError("Join the workshop first (its code and your name, above).")
    lesson = lessons.find(title or "")
    number = max(0, min(int(index or 0), len(lesson.steps) - 1)) + 1
    multiple = "choices" in (lesson.steps[number - 1].check or {})
    if multiple and not choice:
        raise UserError("Choose one of the answers first.")
    result = workshops.answer(
        joined["code"], joined["student"], lesson.name, number, (choice if multiple else given) or ""
    )
    verdict = {True: "✅ Right.", False: "❌ Not quite: look again at the step.", None: "Recorded."}[result["correct"]]
    if "expected" in result:
        verdict += f" Expected: **{html.escape(result['expected'])}**."
    return verdict


def mark_done(title: str | None, index: int, joined: dict[str, Any] | None) -> str:
    if not joined:
        return ""
    lesson = lessons.find(title or "")
    workshops.record(joined["code"], joined["student"], lesson.name, int(index or 0) + 1, "done")
    return f"Step {int(index or 0) + 1} marked done."


SPEC = "workshop_"  # the form's WorkshopSpec controls arrive by name with this prefix


@admin_only("create workshops")
def create_from_page(
    name: str,
    chosen: list[str],
    tabs: list[str],
    drive: str | None,
    pin: bool,
    adapter: str | None,
    request: gr.Request | None = None,
    **values: Any,
):
    """A workshop from the lecturer's form (its settings are `WorkshopSpec`'s controls); `pin` pins
    the sidebar's adapter and sampling settings."""
    spec = build_spec(workshops.WorkshopSpec, values, SPEC)
    sampling = {key: value for key, value in values.items() if not key.startswith(SPEC)}
    pinned = {"adapter": adapter, "sampling": dict(to_params(sampling).to_dict())} if pin else None
    made = workshops.create(
        name,
        [_lesson_id(title) for title in chosen or []],
        tabs=list(tabs or []),  # the form always says which: none ticked allows none
        spec=spec,
        pinned=pinned,
        drive=drive or None,
        created_by=signed_in_user(request),
    )
    return (
        f"Workshop **{html.escape(made.name)}**: join code **{made.code}**, link `{made.link}` (add it to this "
        "page's address).",
        gr.update(choices=workshops.names(), value=made.name),
    )


@admin_only("see a workshop's students")
def class_view(name: str | None, request: gr.Request | None = None):
    """Students x steps and the funnel, for the lecturer (refreshed every few seconds)."""
    if not name:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), "", gr.skip()
    report = workshops.status(name)
    people = pd.DataFrame(
        [
            [p["name"], p["steps_done"], f"{p['checks_right']} / {p['checks_answered']}", f"{p['idle_seconds']:.0f} s"]
            for p in report["students"]
        ],
        columns=["student", "steps done", "checks right", "idle"],
    )
    funnel = pd.DataFrame(
        [
            [
                f"{r['lesson']} {r['step']}",
                r["title"],
                r["reached"],
                r["done"],
                f"{r['checks_right']} / {r['checks_answered']}" if r["checked"] else "—",
            ]
            for r in report["funnel"]
        ],
        columns=["step", "title", "reached", "done", "checks right"],
    )
    answers = "  \n".join(
        f"**{html.escape(step)}**: " + ", ".join(f"{html.escape(a)} × {n}" for a, n in counts.items())
        for step, counts in report["answers"].items()
        if counts
    )
    if report["idle"]:
        minutes = workshops.IDLE_SECONDS // 60
        answers = f"**Idle for {minutes} minutes or more:** {html.escape(', '.join(report['idle']))}  \n" + answers
    columns = [f"{r['lesson']} {r['step']}" for r in report["funnel"]]
    grid = pd.DataFrame(
        [[row["name"], *(_cell(cell) for cell in row["steps"])] for row in report["grid"]],
        columns=["student", *columns],
    )
    return people, grid, funnel, answers, report["reveal"]


def _cell(cell: dict[str, Any] | None) -> str:
    """One student at one step, as the grid shows it: done or still there, right or wrong, time spent."""
    if cell is None:
        return ""
    seconds = cell["seconds"]
    spent = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    verdict = {True: " ✓ right", False: " ✗ wrong", None: ""}[cell["correct"]]
    return f"{'done' if cell['done'] else 'on it'}{verdict} · {spent}"


@admin_only("reveal a workshop's answers")
def reveal_answers(name: str | None, reveal: bool, request: gr.Request | None = None) -> str:
    """Students see the expected answer of each check from their next answer on (or no longer)."""
    if not name:
        raise UserError("Choose a workshop.")
    workshops.set_reveal(name, reveal)
    return "Students now see the expected answer after they answer." if reveal else "Expected answers are hidden."


@admin_only("export a workshop")
def export_class(name: str | None, request: gr.Request | None = None) -> Any:
    """The class as CSV, offered for download (the file box appears with it)."""
    if not name:
        raise UserError("Choose a workshop.")
    safe = re.sub(r"[^\w.-]+", "_", name)
    out = Path(tempfile.mkdtemp(prefix="workshop-")) / f"{safe}.csv"
    workshops.export_csv(name, out)
    return gr.update(value=str(out), visible=True)


def build(
    demo: gr.Blocks, shared: Shared, lesson: gr.Dropdown, index: gr.State, moved: list[Any], targets: dict[str, Any]
) -> None:
    """The workshop panels of the Lessons tab: a student's join box and step checks, the lecturer's
    class. `moved`: the Lessons tab's events that change the step (its checks follow them);
    `targets`: what a workshop sets in other tabs -- the tabs themselves by id (it hides those it
    does not use) and the Label tab's mode and drive."""
    joined = shared.membership
    with gr.Accordion("Workshop: join your class", open=False, elem_id="workshop-join") as join_box:
        with gr.Row():
            code = gr.Textbox(label="Join code", max_lines=1, scale=1, elem_id="workshop-code")
            name = gr.Textbox(label="Your name in the class", max_lines=1, scale=2, elem_id="workshop-name")
            join = gr.Button("Join", variant="primary", scale=1, elem_id="workshop-join-button")
    member = gr.Markdown(elem_id="workshop-member")  # outside the box: it stays in sight once joined
    with gr.Group():
        question = gr.Markdown(visible=False, elem_id="workshop-question")
        with gr.Row():
            answer = gr.Textbox(label="Your answer", visible=False, max_lines=1, scale=3, elem_id="workshop-answer")
            choice = gr.Radio([], label="Your answer", visible=False, scale=3, elem_id="workshop-choice")
            check = gr.Button("Check", visible=False, scale=1, elem_id="workshop-check")
        verdict = gr.Markdown(elem_id="workshop-verdict")
    done = gr.Button("I did this step", size="sm", visible=False, elem_id="workshop-done")
    with gr.Accordion("Run a class (lecturers)", open=False, elem_id="workshop-lecturer"):
        with gr.Row():
            new_name = gr.Textbox(label="Workshop name", max_lines=1, elem_id="workshop-new-name")
            settings = controls(workshops.WorkshopSpec, ["expires_hours", "reveal"])
        chosen = gr.CheckboxGroup(
            _lesson_titles([lesson.name for lesson in lessons.load_lessons()]),
            label="Lessons",
            elem_id="workshop-lessons",
        )
        allowed = gr.CheckboxGroup(
            list(lessons.TABS),
            value=list(lessons.TABS),
            label="Tabs students may use",
            info="the others are hidden from the class and refused by the server",
            elem_id="workshop-tabs",
        )
        with gr.Row():
            drive = LiveDropdown(
                drives.names,
                label="Label drive (optional)",
                info="students find it chosen in Preferences › Label",
                elem_id="workshop-drive",
            )
            pin = gr.Checkbox(label="Pin the sidebar's adapter and sampling settings for the class")
            create = gr.Button("Create workshop", variant="primary", elem_id="workshop-create")
        created = gr.Markdown(elem_id="workshop-created")
        with gr.Row():
            pick = LiveDropdown(workshops.names, label="Workshop", scale=3, elem_id="workshop-pick")
            shown = gr.Checkbox(label="Students see the expected answers", scale=1, elem_id="workshop-reveal")
            csv_button = gr.Button("Export CSV", scale=1)
        revealed = gr.Markdown()
        csv_file = gr.File(label="CSV", visible=False, interactive=False)
        people = gr.Dataframe(label="Students", interactive=False, elem_id="workshop-students")
        grid = gr.Dataframe(
            label="Students x steps: done or on it, the check right or wrong, time spent",
            interactive=False,
            elem_id="workshop-grid",
        )
        funnel = gr.Dataframe(label="Steps: reached, done, checks right", interactive=False, elem_id="workshop-funnel")
        answers = gr.Markdown(elem_id="workshop-answers")
    timer = gr.Timer(5)
    quiet: dict[str, Any] = {"api_visibility": "private"}
    demo.load(login_name, None, name, **quiet)
    demo.load(code_from_link, None, code, **quiet).then(
        lambda c: gr.update(open=True) if c else gr.update(), code, join_box, **quiet
    )
    hidden_tabs = [targets["tabs"][tab] for tab in lessons.TABS]
    labelling = [targets["label_mode"], targets["label_drive"]]
    joined_outputs = [joined, member, lesson, shared.adapter, *shared.sampling.inputs, *hidden_tabs, *labelling]
    step_inputs = [lesson, index, joined]
    step_outputs = [question, answer, choice, check, verdict, done]
    join.click(join_from_page, [code, name, joined], joined_outputs, **quiet).then(
        step_check, step_inputs, step_outputs, **quiet
    )
    demo.load(rejoin, joined, joined_outputs, **quiet).then(step_check, step_inputs, step_outputs, **quiet)
    for dependency in moved:  # after the step changed: the index is the new one
        dependency.then(step_check, step_inputs, step_outputs, **quiet)
    answered = [lesson, index, answer, choice, joined]
    gr.on([check.click, answer.submit], submit_answer, answered, verdict, **quiet)
    done.click(mark_done, [lesson, index, joined], verdict, **quiet)
    create.click(
        create_from_page,
        [new_name, chosen, allowed, drive, pin, shared.adapter],
        [created, pick],
        inputs_kwargs=shared.sampling.kwargs() | {SPEC + field: control for field, control in settings.items()},
        **quiet,
    )
    view = [people, grid, funnel, answers, shown]
    gr.on([pick.change, timer.tick], class_view, pick, view, **quiet, show_progress="hidden")
    shown.input(reveal_answers, [pick, shown], revealed, **quiet)
    csv_button.click(export_class, pick, csv_file, **quiet)
