"""Things created after the app started (adapters, reward models) are valid choices for every API call.

A dropdown built at server start used to validate API calls against its start-up list, so
`/reward_score` refused a reward model trained since ("not in the list of choices: []").
"""

from __future__ import annotations

import pytest
from gradio_client import Client

from pipelines.store import jobs
from pipelines.train import reward
from tests.helpers import ROOT, launched_app, make_lora_adapter

pytestmark = pytest.mark.api
PAIRS = ROOT / "assets" / "datasets" / "preference_pairs.jsonl"


def test_api_calls_accept_what_was_created_after_start(fresh_tiny_handle, tiny_model_env, data_dir, tokenizer):
    with launched_app(fresh_tiny_handle) as url:
        client = Client(url, verbose=False)
        make_lora_adapter(tokenizer, data_dir / "adapters", "late-adapter")
        spec = reward.RewardSpec(out="late-rm", data=str(PAIRS), max_steps=1, batch_size=4, max_length=96)
        assert jobs.run_foreground("reward", spec.out, spec.to_dict(), echo=False).status == jobs.SUCCEEDED

        text, stats = client.predict(
            prompt="Hello", adapter="late-adapter", temperature=0, max_new_tokens=4, api_name="/generate"
        )
        assert "tokens/s" in stats
        scored = client.predict(name="late-rm", prompt="Hi", response="Hello!", api_name="/reward_score")
        assert scored.startswith("Reward:")
        with pytest.raises(Exception, match="not in the list of choices"):
            client.predict(name="never-trained", prompt="Hi", response="Hello!", api_name="/reward_score")
        listed = client.predict(api_name="/list_adapters")
        assert "late-adapter" in str(listed)
