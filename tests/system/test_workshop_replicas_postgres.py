"""One class, two replicas (issue 37): two `python app.py` processes on one PostgreSQL, behind a
load balancer that sends each request to either. Students join through one replica and answer
through the other; both replicas show the lecturer the same class, and a student's browser is
refused the tabs its workshop hides by the replica that did not see it join (the replicas share
PLAYGROUND_SECRET_KEY, as a deployment behind a balancer must for its visitor cookies)."""

from __future__ import annotations

import pytest
from gradio_client import Client

from pipelines import access, config
from pipelines.lessons import workshops
from pipelines.store import db
from tests import postgres
from tests.app_process import AppProcess

pytestmark = [pytest.mark.system, pytest.mark.heavy]  # two app processes on one PostgreSQL: `make test-heavy`
STUDENTS = ["Ada", "Bob", "Cy", "Dee"]


def _without_clock(report: dict) -> dict:
    """The view without what depends on the moment it was asked (seconds idle)."""
    return {
        **report,
        "students": [{k: v for k, v in s.items() if k != "idle_seconds"} for s in report["students"]],
        "idle": None,
    }


def test_two_replicas_show_the_same_class(postgres_admin_url, data_dir, tiny_model_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", postgres.fresh_database(postgres_admin_url))
    monkeypatch.setenv("PLAYGROUND_SECRET_KEY", "shared-by-both-replicas")
    config.reset_settings()
    access.reset_visitor_keys()
    db.dispose_all()
    made = workshops.create("Replicated", ["1_decoding"], tabs=["generate", "inside"])
    replicas = []
    try:
        for n in range(2):
            (tmp_path / f"replica-{n}").mkdir()
            replicas.append(AppProcess(tmp_path / f"replica-{n}", tiny_model_env))
        for number, name in enumerate(STUDENTS):
            _, token = access.visitor_keys().mint()  # one browser: its cookie goes to both replicas
            cookie = {"cookie": f"{access.VISITOR_COOKIE}={token}"}
            first, other = (Client(app.url, headers=cookie, verbose=False) for app in replicas[:: 1 - 2 * (number % 2)])
            student = first.predict(code=made.code, name=name, api_name="/workshop_join")["student"]
            other.predict(
                code=made.code,
                student=student,
                lesson="1_decoding",
                step=1,
                kind="reached",
                api_name="/workshop_progress",
            )
            answer = "no, it changes" if name == "Bob" else "yes, word for word"
            result = other.predict(
                code=made.code, student=student, lesson="1_decoding", step=1, answer=answer, api_name="/workshop_answer"
            )
            assert result == {"correct": name != "Bob"}
            with pytest.raises(Exception, match="does not use this tab"):
                other.predict(api_name="/clear_chat")  # joined through the first replica, refused by the other
        views = [
            Client(app.url, verbose=False).predict(name="Replicated", api_name="/workshop_status") for app in replicas
        ]
        assert _without_clock(views[0]) == _without_clock(views[1]) == _without_clock(workshops.status("Replicated"))
        assert [s["name"] for s in views[0]["students"]] == STUDENTS
        assert views[0]["funnel"][0]["reached"] == 4 and views[0]["funnel"][0]["checks_right"] == 3
        assert views[0]["answers"]["1_decoding 1"] == {"yes, word for word": 3, "no, it changes": 1}
    finally:
        for app in replicas:
            app.kill()
        access.reset_visitor_keys()
        db.dispose_all()
