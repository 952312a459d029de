"""A workshop through the API (issue 37): join by code, report steps, answer a checked step; wrong
codes, ended workshops and unknown students are refused with the reason; a student's browser is
refused the tabs its workshop hides, by the server (another visitor is not)."""

from __future__ import annotations

import pytest
from gradio_client import Client

from pipelines.lessons import workshops
from pipelines.store import db

pytestmark = pytest.mark.api


def test_join_progress_and_answers_over_the_api(app_url):
    made = workshops.create("API class", ["1_decoding"], spec=workshops.WorkshopSpec(reveal=True))
    client = Client(app_url, verbose=False)
    joined = client.predict(code=made.code, name="Eve", api_name="/workshop_join")
    assert set(joined) == {"student", "workshop", "lessons", "tabs"} and joined["lessons"] == ["1_decoding"]
    student = joined["student"]
    done = client.predict(
        code=made.code, student=student, lesson="1_decoding", step=1, kind="done", api_name="/workshop_progress"
    )
    assert done == {"recorded": "done"}
    wrong = client.predict(
        code=made.code,
        student=student,
        lesson="1_decoding",
        step=1,
        answer="no, it changes",
        api_name="/workshop_answer",
    )
    assert wrong == {"correct": False, "expected": "yes, word for word"}
    with pytest.raises(Exception, match="no workshop has this join code"):
        client.predict(code="WRONG1", name="Eve", api_name="/workshop_join")
    with pytest.raises(Exception, match="has not joined the workshop"):
        client.predict(
            code=made.code, student="nobody", lesson="1_decoding", step=1, answer="x", api_name="/workshop_answer"
        )
    ended = workshops.create("Ended", ["1_decoding"], spec=workshops.WorkshopSpec(expires_hours=0.1), now=0.0)
    with pytest.raises(Exception, match="has ended"):
        client.predict(code=ended.code, name="Late", api_name="/workshop_join")
    report = workshops.status("API class")
    assert report["students"][0]["name"] == "Eve" and report["students"][0]["steps_done"] == 1
    db.dispose_all()


def test_a_student_is_refused_the_tabs_the_workshop_hides(app_url):
    made = workshops.create("Tabs class", ["1_decoding"], tabs=["generate", "inside"])
    student = Client(app_url, verbose=False)
    student.predict(code=made.code, name="Finn", api_name="/workshop_join")
    with pytest.raises(Exception, match="'Tabs class' does not use this tab"):
        student.predict(api_name="/clear_chat")  # the Chat tab: hidden on the page, refused here
    with pytest.raises(Exception, match="does not use this tab"):
        student.predict(reference="a", candidate="b", api_name="/explain_metrics")  # Fine-tune
    with pytest.raises(Exception, match="Choose a task"):  # Generate: allowed, the handler's own answer
        student.predict(task=None, api_name="/measure_shots")
    outsider = Client(app_url, verbose=False)  # another browser, in no class: every tab
    assert outsider.predict(api_name="/clear_chat")
    # the lecturer's view over the API is the library's (`workshop status --json`)
    report = outsider.predict(name="Tabs class", api_name="/workshop_status")
    assert [s["name"] for s in report["students"]] == ["Finn"] and report["funnel"][0]["lesson"] == "1_decoding"
    db.dispose_all()
