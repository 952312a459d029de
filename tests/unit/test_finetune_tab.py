"""Fine-tune tab handlers as plain Python."""

from __future__ import annotations

import pytest

from pipelines.engine import models
from pipelines.store import jobs
from playground import finetune as tab
from tests.refusals import REFUSED


def test_bundled_sample_checks_clean(use_tiny):
    summary, preview, problems, mask, usable = tab.check_data(None, "concise_tutor.jsonl", 512)
    assert "120 rows" in summary and "Every row is usable" in summary
    assert len(preview) == 5 and problems.empty
    assert "class='tok loss'" in mask and "carry the loss" in mask


def test_upload_with_bad_rows_lists_them(use_tiny, tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": 3, "response": "x"}\n{oops\n')
    summary, _, problems, _, _ = tab.check_data(str(path), None, 512)
    assert "2 rows have problems" in summary
    assert list(problems["row"]) == [2, 3]


def test_unusable_upload_is_a_message(use_tiny, tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("hello")
    with pytest.raises(REFUSED, match="unsupported file type"):
        tab.check_data(str(path), None, 512)
    with pytest.raises(REFUSED, match="Upload a dataset"):
        tab.check_data(None, None, 512)


def test_plan_updates_with_the_settings(use_tiny):
    small, table = tab.update_plan("lora", 4, ["q_proj"], 20)
    large, _ = tab.update_plan("lora", 32, ["q_proj", "v_proj"], 20)
    prompt, _ = tab.update_plan("prompt-tuning", 4, [], 20)
    assert "trainable parameters" in small and small != large and "1,280" in prompt
    assert list(table["method"])[0].startswith("Full fine-tuning") and len(table) == 4
    _, longer = tab.update_plan("lora", 4, ["q_proj"], 20, 8, 1024)
    _, checkpointed = tab.update_plan("lora", 4, ["q_proj"], 20, 8, 1024, True)
    assert list(longer["activations"]) != list(table["activations"])  # batch x length drive activations
    assert list(checkpointed["activations"]) != list(longer["activations"])


def test_start_job_validates_and_queues(use_tiny, tiny_model_env, tmp_path, data_dir, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "manager", lambda: type("M", (), {"poll_once": lambda self: started.append(1)})())
    args = dict(
        upload=None,
        sample="concise_tutor.jsonl",
        skip_bad_rows=False,
        method="lora",
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj"],
        num_virtual_tokens=10,
        learning_rate=1e-3,
        epochs=1,
        max_steps=2,
        batch_size=4,
        grad_accum=1,
        max_length=128,
        gradient_checkpointing=False,
        seed=1,
        qlora=False,
        out="from-ui",
        overwrite=False,
    )
    update = tab.start_job(**args)
    job = jobs.get(update["value"])
    assert job.status == jobs.QUEUED and job.spec["out"] == "from-ui" and started
    assert job.spec["data"].startswith(str(data_dir / "jobs" / job.id / "inputs"))  # the data travels with the job
    with pytest.raises(REFUSED, match="LoRA rank r: must be between 1 and 256"):
        tab.start_job(**{**args, "lora_r": 0})
    with pytest.raises(REFUSED, match="invalid adapter name"):
        tab.start_job(**{**args, "out": "../../etc"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "only"}\n')
    with pytest.raises(REFUSED, match="rows have problems"):
        tab.start_job(**{**args, "upload": str(bad)})
    assert tab.start_job(**{**args, "upload": str(bad), "skip_bad_rows": True, "out": "skipping"})["value"]
    # selective fine-tuning takes the ticked blocks; none ticked is refused, naming the setting
    chosen = jobs.get(tab.start_job(**{**args, "method": "selective", "train_blocks": [1, 0], "out": "sel"})["value"])
    assert chosen.spec["method"] == "selective" and chosen.spec["train_blocks"] == [0, 1]
    with pytest.raises(REFUSED, match="at least one block"):
        tab.start_job(**{**args, "method": "selective", "train_blocks": [], "out": "sel2"})


def test_plan_compares_selective_blocks(use_tiny):
    text, table = tab.update_plan("selective", 4, ["q_proj"], 20, 4, 128, False, 0.0, [1])
    assert list(table["method"]) == [
        "Full fine-tuning",
        "Selective (blocks 1)",
        "LoRA r=4",
        "Prompt tuning (20 tokens)",
        "QLoRA r=4 (NF4)",
    ]
    block = sum(p.numel() for p in models.get_handle().base_model.model.layers[1].parameters())
    assert f"**{block:,}** trainable parameters" in text


def test_presets_fill_the_form_with_a_valid_run():
    """Each preset makes a spec the job accepts, and the form shows the method's own settings."""
    from pipelines.train import finetune

    for label, settings in finetune.PRESETS.items():
        values = tab.load_preset(label)
        assert values[0] == settings["method"] and values[4] == settings["learning_rate"]
        assert [v["visible"] for v in values[1:4]] == [
            settings["method"] == "lora",
            settings["method"] == "prompt-tuning",
            settings["method"] == "selective",
        ]
        spec = finetune.FinetuneSpec(data="d.jsonl", train_blocks=[28, 29], **settings)
        assert spec.lr == settings["learning_rate"]
    assert tab.load_preset(None) == [{"__type__": "update"}] * 8


def test_the_plan_reads_the_base_model_as_it_was_before_adapters_were_used(fresh_tiny_handle, tokenizer, data_dir):
    """Issue 42, W2: selective blocks 28,29 planned 7.08 M trainable parameters on a fresh server, then 7.24 M
    and 7.41 M once adapters had been used (their LoRA weights were counted as the blocks')."""
    from pipelines.engine import generation
    from pipelines.engine.sampling import SamplingParams
    from tests.helpers import make_lora_adapter

    models.set_handle(fresh_tiny_handle)
    before = tab.update_plan("selective", 4, ["q_proj"], 20, 4, 128, False, 0.0, [0, 1])
    for seed, name in enumerate(("style-a", "style-b"), start=1):
        make_lora_adapter(tokenizer, data_dir / "adapters", name, seed=seed)
        generation.generate(fresh_tiny_handle, "Hi", SamplingParams(max_new_tokens=2), adapter=name)
    after = tab.update_plan("selective", 4, ["q_proj"], 20, 4, 128, False, 0.0, [0, 1])
    assert after[0] == before[0] and after[1].equals(before[1])


def test_small_data_is_warned_before_a_run():
    """Issue 42: users of other fine-tuning UIs expect a warning before 12 rows x 60 steps memorise the data."""
    from pipelines.train import finetune

    common = {"eval_fraction": 0.1, "batch_size": 8, "grad_accum": 1, "epochs": 3}
    warned = finetune.small_data_warning(12, max_steps=60, **common)
    assert "Only 11 training examples and each one seen about 44 times (60 steps of 8)" in warned
    assert "memorise" in warned
    assert finetune.small_data_warning(120, max_steps=-1, **common) is None  # the bundled sample, 3 epochs
    assert "seen about 27 times" in finetune.small_data_warning(1000, max_steps=3000, **common)  # 24,000 / 900
    assert tab.warn_small_data(12, 0.1, 8, 1, 3, 60).startswith("⚠️ Only 11")
    assert tab.warn_small_data(0, 0.1, 8, 1, 3, 60) == ""  # no data checked yet: nothing to say
