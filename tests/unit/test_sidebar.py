"""Who is acting: Gradio auth, Hugging Face OAuth, or a typed name."""

from __future__ import annotations

from types import SimpleNamespace

from playground.sidebar import annotator_name, signed_in_user


def test_gradio_auth_user_wins_over_typed_name():
    assert annotator_name("typed", SimpleNamespace(username="alice")) == "alice"


def test_hugging_face_oauth_profile_from_the_session():
    request = SimpleNamespace(username=None, session={"oauth_info": {"userinfo": {"preferred_username": "hf-bob"}}})
    assert signed_in_user(request) == "hf-bob" and annotator_name("typed", request) == "hf-bob"


def test_anonymous_falls_back_to_the_typed_name():
    assert annotator_name("  carol ", SimpleNamespace(username=None)) == "carol"
    assert annotator_name("", None) == "" and signed_in_user(None) is None
