"""Reasoning through gradio_client: the three strategies on one question, as a script would."""

from __future__ import annotations

import pytest
from gradio_client import Client

from playground.reasoning import KEYS, reset_prompt

pytestmark = pytest.mark.api


def test_reason_endpoint(app_url):
    client = Client(app_url, verbose=False)
    prompts = [
        reset_prompt(k)
        .replace('"max_new_tokens": 200', '"max_new_tokens": 4')
        .replace('"max_new_tokens": 24', '"max_new_tokens": 4')
        for k in KEYS
    ]
    out = client.predict(
        question="What is 2 + 2?",
        gold=4,
        keys=["direct", "pal"],
        samples=1,
        direct_prompt=prompts[0],
        cot_prompt=prompts[1],
        pal_prompt=prompts[2],
        temperature=0,
        api_name="/reason",
    )
    raw = out[-1]
    assert [r["strategy"] for r in raw["results"]] == ["direct", "pal"]
    assert all(r["correct"] in (True, False) for r in raw["results"])
    with pytest.raises(Exception, match="empty"):
        client.predict(
            question=" ",
            gold=None,
            keys=["direct"],
            samples=1,
            direct_prompt=prompts[0],
            cot_prompt=prompts[1],
            pal_prompt=prompts[2],
            api_name="/reason",
        )
