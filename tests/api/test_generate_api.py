"""The launched app, called the way scripts call it: through gradio_client."""

from __future__ import annotations

import pytest
from gradio_client import Client

pytestmark = pytest.mark.api


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


def test_named_endpoints_exist(client):
    endpoints = client.view_api(return_format="dict")["named_endpoints"]
    assert {"/generate", "/inspect", "/compare", "/preset"} <= set(endpoints)
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == [
        "prompt",
        "adapter",
        "max_new_tokens",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "repetition_penalty",
        "seed",
        "stop",
    ]


def test_generate_is_seeded_and_reports_stats(client):
    first = client.predict(prompt="Hello", temperature=1.0, seed=11, max_new_tokens=10, api_name="/generate")
    again = client.predict(prompt="Hello", temperature=1.0, seed=11, max_new_tokens=10, api_name="/generate")
    assert first[0] == again[0] and first[0]
    assert "tokens/s" in first[1] and "seed `11`" in first[1]


def test_inspect_returns_both_distributions(client):
    raw, final, summary, table = client.predict(prompt="Hello", temperature=1.0, top_k=4, api_name="/inspect")
    assert "4 of" in summary
    assert sum(row[-1] == "—" for row in table["data"]) == 4


def test_compare_two_settings(client):
    a_text, a_stats, b_text, b_stats = client.predict(
        prompt="Hello",
        a_temperature=0,
        a_max_new_tokens=6,
        b_temperature=1.5,
        b_seed=2,
        b_max_new_tokens=6,
        api_name="/compare",
    )
    assert a_text and b_text and "seed `2`" in b_stats


def test_bad_input_is_a_message_and_the_app_keeps_serving(client):
    with pytest.raises(Exception, match="empty"):
        client.predict(prompt="", api_name="/generate")
    with pytest.raises(Exception, match="(?i)minimum|top_p"):
        client.predict(prompt="Hello", top_p=0, api_name="/generate")
    assert client.predict(prompt="Hello", max_new_tokens=3, api_name="/generate")[0] is not None
