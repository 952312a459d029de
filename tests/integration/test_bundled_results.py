"""The bundled adapters and reward model on the real model: their recorded figures still hold.

`bundled_figures.measure` recomputes each figure on the held-out data its training job set aside; the
figures recorded in meta.json (and quoted in docs/teaching.md) were measured the same way, so they must
agree up to float noise between CPUs, and with the training job's own figures (trl's evaluation)
as closely.
"""

from __future__ import annotations

import json

import pytest

from pipelines.engine import bundled, chat
from pipelines.engine.messages import Message
from pipelines.engine.sampling import SamplingParams
from pipelines.train import bundled_figures

pytestmark = [pytest.mark.integration, pytest.mark.heavy]  # ~75 s: `make test-heavy`


def recorded(name: str) -> tuple[dict, dict]:
    meta = json.loads((bundled.locate(name) / "meta.json").read_text(encoding="utf-8"))
    return meta["bundled"]["figures"], meta["metrics"]


@pytest.fixture
def with_models(bundled_dir, data_dir):
    import shutil

    from tests.helpers import MODEL_CACHE

    shutil.copytree(MODEL_CACHE / "models", data_dir / "models")


def test_concise_tutor_adapter(with_models):
    figures, job = recorded("concise-tutor")
    measured = bundled_figures.measure("concise-tutor")
    assert measured == pytest.approx(figures, rel=0.02)
    assert measured["held_out_loss_after"] < measured["held_out_loss_before"] - 0.5  # it learned the answers' style
    assert measured["general_perplexity_after"] < 1.2 * measured["general_perplexity_before"]  # and forgot nothing
    assert measured["held_out_loss_after"] == pytest.approx(job["after"]["loss"], abs=0.02)
    assert measured["held_out_loss_before"] == pytest.approx(job["before"]["loss"], abs=0.02)


def test_concise_tutor_answers_in_the_samples_shape(real_handle):
    greedy = SamplingParams(temperature=0, max_new_tokens=24)
    question = [Message("user", "What is a volcano?")]
    tuned = chat.reply(real_handle, question, greedy, adapter="concise-tutor")[0].text
    base = chat.reply(real_handle, question, greedy, adapter=None)[0].text
    assert tuned.startswith("In short:") and not base.startswith("In short:")


def test_helpful_reward_model(with_models):
    figures, job = recorded("helpful-reward")
    measured = bundled_figures.measure("helpful-reward")
    assert measured == pytest.approx(figures, rel=0.02, abs=1e-3)
    assert measured["held_out_accuracy"] >= 0.85
    assert measured["held_out_accuracy"] == pytest.approx(job["eval_accuracy"], abs=1 / 24 + 1e-9)
    assert measured["held_out_margin"] == pytest.approx(job["eval_margin"], rel=0.02)


def test_helpful_dpo_adapter(with_models):
    figures, job = recorded("helpful-dpo")
    measured = bundled_figures.measure("helpful-dpo")
    assert measured == pytest.approx(figures, rel=0.02, abs=1e-3)
    assert measured["implicit_margin"] > 0.2 and measured["implicit_accuracy"] >= 0.8
    assert measured["implicit_accuracy"] == pytest.approx(job["after"]["accuracy"], abs=1 / 24 + 1e-9)
    assert measured["implicit_margin"] == pytest.approx(job["after"]["margin"], rel=0.02)


def test_the_model_serves_the_bundled_adapters_by_name(real_handle):
    info = real_handle._adapter_info("helpful-dpo")
    assert info.is_bundled and info.peft_type == "LORA"


def test_distilled_student(with_models):
    """The bundled student (20 of 30 blocks + LoRA, distilled with GKD) against its teacher."""
    figures, job = recorded("distilled-student")
    measured = bundled_figures.measure("distilled-student")
    assert measured == pytest.approx(figures, rel=0.02)
    assert measured["held_out_kl_after"] < measured["held_out_kl_before"] - 0.5  # it moved toward the teacher
    assert measured["held_out_agreement_after"] > measured["held_out_agreement_before"] + 0.1
    assert measured["general_perplexity_after"] < 0.8 * measured["general_perplexity_before"]  # on text never seen
    for key in ("held_out_kl", "held_out_agreement", "general_perplexity"):  # the shipped bf16 adapter = the job's
        assert measured[f"{key}_after"] == pytest.approx(job["after"][key], rel=0.02)
        assert measured[f"{key}_before"] == pytest.approx(job["before"][key], rel=0.02)


def _grpo(name: str) -> tuple[dict, dict, dict]:
    """A bundled GRPO run re-measured on the 40 held-out problems its job never trained on (~80 s)."""
    from pipelines.cli.bundled import measurers

    figures, job = recorded(name)
    measured = bundled_figures.measure(name, measurers())
    tolerance = 1 / 40 + 1e-9  # one answer either way between CPUs
    assert measured == pytest.approx(figures, abs=tolerance)
    for key in ("heldout_accuracy_before", "heldout_accuracy_after"):
        assert measured[key] == pytest.approx(job[key], abs=tolerance)
    return figures, job, measured


def test_the_hacked_reward_rose_while_held_out_accuracy_fell(with_models):
    figures, job, measured = _grpo("grpo-hack")
    assert measured["heldout_accuracy_after"] < measured["heldout_accuracy_before"]
    curve = job["rewards"]["number"]
    assert sum(curve[-5:]) / 5 > sum(curve[:5]) / 5 + 0.2  # the reward it was given did rise
    assert job["kl"][-1] > job["kl"][0]


def test_grpo_on_correctness_beats_the_base_model_on_held_out_problems(with_models):
    figures, job, measured = _grpo("grpo-correct")
    assert measured["heldout_accuracy_after"] >= measured["heldout_accuracy_before"] + 0.1  # 6 -> 15 of 40 here
    for name in ("correctness", "format"):
        curve = job["rewards"][name]
        assert sum(curve[-10:]) > sum(curve[:10])


def test_the_tuned_lens_reads_the_middle_layers_closer_to_the_final_distribution(with_models):
    """Issue 40: the shipped translators, re-measured on text they were never fitted on."""
    from pipelines.cli.bundled import measurers

    figures, job = recorded("tuned-lens")
    measured = bundled_figures.measure("tuned-lens", measurers())
    assert measured == pytest.approx(figures, rel=0.02)
    assert measured["kl_tuned_lens_mean"] < 0.7 * measured["kl_logit_lens_mean"]
    assert measured["kl_tuned_lens_mean"] == pytest.approx(job["kl_tuned_lens_mean"], rel=0.02)
