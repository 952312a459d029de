"""The workshop's page handlers (playground/workshop.py) without a browser: who a student is, what the
lecturer's grid shows."""

from __future__ import annotations

from types import SimpleNamespace

from pipelines.lessons import TABS, workshops
from playground import workshop


def _signed_in(login: str) -> SimpleNamespace:
    """A request from a Space visitor signed in with Hugging Face OAuth (no visitor cookie)."""
    oauth = {"oauth_info": {"userinfo": {"preferred_username": login}}}
    return SimpleNamespace(username=None, session=oauth, headers={}, client=None, session_hash="s")


def test_a_signed_in_student_joins_under_their_login():
    made = workshops.create("Login class", ["1_decoding"])
    request = _signed_in("hf-ana")
    assert workshop.login_name(request)["value"] == "hf-ana"
    workshop.workshop_join(made.code, "Someone Else", request)  # a typed name cannot pose as another
    assert [s["name"] for s in workshops.status("Login class")["students"]] == ["hf-ana"]
    assert workshop.login_name(SimpleNamespace(username=None, session={})) == {"__type__": "update"}


def test_the_grid_says_done_right_and_time_spent():
    assert workshop._cell(None) == ""
    assert workshop._cell({"done": True, "correct": True, "seconds": 45.0}) == "done ✓ right · 45 s"
    assert workshop._cell({"done": False, "correct": False, "seconds": 300.0}) == "on it ✗ wrong · 5 min"
    assert workshop._cell({"done": False, "correct": None, "seconds": 3.0}) == "on it · 3 s"


def test_tabs_are_hidden_by_name_and_shown_again_outside_a_class():
    hidden = workshop.tab_updates(["generate", "inside"])
    assert [u["visible"] for u in hidden] == [True if tab in ("generate", "inside") else "hidden" for tab in TABS]
    assert all(u["visible"] is True for u in workshop.tab_updates(None))
