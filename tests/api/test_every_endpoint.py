"""Every named endpoint is called through gradio_client, most with bad input: each answers with a clear message.

The first test keeps the table honest: an endpoint added to the app without a call in some API
test fails it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

pytestmark = pytest.mark.api

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "binary.jsonl").write_bytes(b"not json\n\xff\xfe\x00")
    (folder / "broken.json").write_text('{"messages": [')
    (folder / "empty.jsonl").write_text("")
    return folder


def _cases(f: Path) -> dict[str, tuple[dict, str]]:
    """endpoint -> (arguments, regex the error (or the result's text) must match)."""
    return {
        "align_eval": (dict(adapter=None, reward_model=None, upload=None), r"[Cc]hoose"),
        "align_queue": (dict(adapter=None, upload=None), r"[Cc]hoose"),
        "chat_compare": (dict(history=[], annotator="t"), r"no user message"),
        "check_dataset": (dict(upload=handle_file(str(f / "binary.jsonl")), sample=None), r"not UTF-8"),
        "clear_chat": (dict(), r"^OK"),
        "save_capsule": (dict(), r"Generate something first"),
        "load_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "save_chat_capsule": (dict(), r"Nothing to save yet"),
        "load_chat_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "save_rag_capsule": (dict(), r"Nothing to save yet"),
        "load_rag_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "save_reason_capsule": (dict(), r"Nothing to save yet"),
        "load_reason_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "save_comparison_capsule": (dict(), r"Nothing to save yet"),
        "load_comparison_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "download_adapter": (dict(name=None), r"Choose an adapter"),
        "explain_metrics": (dict(reference="", candidate="x"), r"Give both a reference"),
        "export_chat": (dict(history=[{"role": "user", "content": "hi"}]), r"content|list"),
        "finetune_plan": (
            dict(method="lora", lora_r=8, targets=["q_proj"], virtual_tokens=20),
            r"trainable parameters",
        ),
        "import_chat": (dict(file=handle_file(str(f / "broken.json"))), r"JSON|json"),
        "import_preferences": (dict(file=handle_file(str(f / "binary.jsonl"))), r"not UTF-8"),
        "list_adapters": (dict(), r"base model"),
        "measure_shots": (dict(task=None), r"Choose a task"),
        "measure_wordings": (dict(task="Arithmetic"), r"not in the list of choices"),
        "merge_adapter": (dict(name=None), r"Choose an adapter"),
        "push_preferences": (dict(repo_id="no-slash", token=""), r"repository id"),
        "rag_delete": (dict(name=None), r"Choose a collection"),
        "rag_reindex": (dict(name=None), r"Choose a collection"),
        "rag_remove_document": (dict(name=None, doc_id=""), r"Choose a collection"),
        "rag_injection_demo": (dict(name=None), r"^OK"),  # makes its own collection (issue 42)
        "reason_bench": (dict(source="Upload JSONL", file=None, limit=1), r"Upload a JSONL"),
        "reason_load_run": (dict(run_id=None), r"Choose a saved run"),
        "reward_agreement": (dict(name=None), r"Choose a reward model"),
        "reward_models": (dict(), r"held-out"),
        "reward_score": (dict(name=None), r"Choose a reward model"),
        "start_alignment": (
            dict(
                method="DPO (from preference pairs)",
                pair_source="Upload a file",
                pair_upload=handle_file(str(f / "binary.jsonl")),
                prompt_upload=None,
                rloo_reward_model=None,
            ),
            r"not UTF-8",
        ),
        "start_reward_training": (
            dict(source="Upload a file", upload=handle_file(str(f / "empty.jsonl"))),
            r"need at least 2 preference pairs",
        ),
        "upload_prompt_set": (dict(file=handle_file(str(f / "binary.jsonl")), name="x"), r"not UTF-8"),
        "cancel_finetune_job": (dict(job_id=None), r"Select a job"),
        "cancel_reward_job": (dict(job_id=None), r"Select a job"),
        "cancel_dpo_job": (dict(job_id=None), r"Select a job"),
        "cancel_classify_job": (dict(job_id=None), r"Select a job"),
        "cancel_distill_job": (dict(job_id=None), r"Select a job"),
        "save_finetune_job_capsule": (dict(job_id=None), r"Select a job"),
        "save_reward_job_capsule": (dict(job_id=None), r"Select a job"),
        "save_dpo_job_capsule": (dict(job_id=None), r"Select a job"),
        "save_classify_job_capsule": (dict(job_id=None), r"Select a job"),
        "save_distill_job_capsule": (dict(job_id=None), r"Select a job"),
        "load_finetune_job_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "load_reward_job_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "load_dpo_job_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "load_classify_job_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "load_distill_job_capsule": (dict(file=handle_file(str(f / "broken.json"))), r"not valid JSON"),
        "classifiers": (dict(), r"held-out acc"),
        "classify": (dict(name=None, text="x", text_pair=""), r"Choose a classifier"),
        "start_classifier": (
            dict(source="Upload a file", upload=handle_file(str(f / "binary.jsonl"))),
            r"not UTF-8",
        ),
        "drive_next": (dict(drive="nope", annotator="t"), r"no label drive 'nope'"),
        "save_drive": (dict(name="  "), r"name the drive"),
        "add_drive_items": (dict(file=handle_file(str(f / "binary.jsonl")), name="x"), r"no label drive 'x'"),
        "mark_gold": (dict(item_id="", answer="A"), r"Give the id"),
        "drives_view": (dict(), r"^OK"),
        "inside_tokens": (dict(text="  ", as_chat=False), r"text: is empty"),
        "inside_perplexity": (dict(text="a", adapter=None), r"text: needs at least two tokens"),
        "inside_score": (dict(prompt="LLMs are", first="", second="", adapter=None), r"continuation: is empty"),
        "inside_attention": (dict(prompt="hi there", layer=5, head=0, mean=False, adapter=None), r"layer: must be"),
        "inside_lens": (dict(prompt="", tuned=False, adapter=None), r"prompt: is empty"),
        "inside_heads": (dict(score="induction", refresh=False, adapter=None), r"8 heads \(2 layers × 4\)"),
        "inside_patch": (
            dict(clean="The Eiffel Tower is in", corrupt="Rome", target="Paris", foil="", more=False, adapter=None),
            r"patching needs prompts of the same length",
        ),
        "inside_steer": (
            dict(
                positive=" ",
                negative="bad",
                prompt="x",
                layer=0,
                strength=1,
                new_tokens=4,
                temperature=0,
                seed=0,
                adapter=None,
            ),
            r"positive: is empty",
        ),
        "inside_architecture": (
            dict(context=20_000_000),
            r"greater than maximum value 10000000",
        ),  # Gradio checks the range
        "token_tree_grow": (dict(branch_id=None, at=0, alternative=None, typed="x"), r"Generate something first"),
        "token_tree_export": (dict(), r"Generate something first"),
        "workshop_join": (dict(code="", name="x"), r"no workshop has this join code"),
        "workshop_progress": (dict(code="NOPE99", student="s", lesson="1_decoding", step=1, kind="done"), r"join code"),
        "workshop_answer": (dict(code="NOPE99", student="s", lesson="1_decoding", step=1, answer="x"), r"join code"),
        "workshop_status": (dict(name="nope"), r"no workshop named"),
        "scale": (dict(params="7x"), r"a size such as 135M"),
        "inside_masking": (dict(text="  "), r"text: is empty"),
        "inside_span_corruption": (dict(text="x"), r"at least two tokens"),
        "inside_attention_both": (dict(text=""), r"is empty"),
        "inside_sentence_order": (dict(first="One.", second=" "), r"give two sentences"),
        "data_quality": (dict(text="   "), r"text: is empty"),
        "inside_bias": (dict(text="no choice here", adapter=None), r"exactly one \{a\|b\}"),
        "compress": (dict(variants=["q4_0"], text="", new_tokens=4), r"q4_0.*is [\d.]+× smaller than fp32"),
        "prune": (dict(sparsities="0 half", text=""), r"Sparsities: must be numbers between 0 and 0.99"),
        "instruction_mix": (dict(tasks=[], cap=5), r"Tasks: choose at least one"),
        "constitution": (dict(prompts=" ", chosen=["harmless"]), r"prompts: give at least one prompt"),
        "react": (dict(question=" ", collection=None), r"question: is empty"),
        "adapter_costs": (dict(lora_r=0), r"Value 0 is less than minimum value 1"),  # Gradio checks the range
        "student": (dict(student=None), r"Student: is required"),
        "grpo_group": (dict(job_id=None, run="the job selected above", step=0), r"Select a GRPO job"),
        "start_distillation": (dict(prompts=None, out="distilled-student"), r"is the name of a bundled result"),
        "drift": (
            dict(source="Two lists of prompts", reference_text="one\ntwo", recent_text="three"),
            r"reference: needs at least 5 prompts",
        ),
    }


ENDPOINTS = sorted(
    [
        "align_eval",
        "align_queue",
        "chat_compare",
        "check_dataset",
        "clear_chat",
        "download_adapter",
        "explain_metrics",
        "export_chat",
        "finetune_plan",
        "import_chat",
        "import_preferences",
        "list_adapters",
        "measure_shots",
        "measure_wordings",
        "merge_adapter",
        "push_preferences",
        "rag_delete",
        "rag_injection_demo",
        "rag_reindex",
        "rag_remove_document",
        "reason_bench",
        "reason_load_run",
        "reward_agreement",
        "reward_models",
        "reward_score",
        "start_alignment",
        "start_reward_training",
        "upload_prompt_set",
        "cancel_finetune_job",
        "cancel_distill_job",
        "cancel_reward_job",
        "cancel_dpo_job",
        "cancel_classify_job",
        "classifiers",
        "classify",
        "start_classifier",
        "drive_next",
        "save_drive",
        "add_drive_items",
        "mark_gold",
        "drives_view",
        "inside_tokens",
        "inside_perplexity",
        "inside_score",
        "inside_attention",
        "inside_lens",
        "inside_heads",
        "inside_patch",
        "inside_steer",
        "inside_architecture",
        "token_tree_grow",
        "token_tree_export",
        "workshop_join",
        "workshop_progress",
        "workshop_answer",
        "workshop_status",
        "scale",
        "inside_masking",
        "inside_span_corruption",
        "inside_attention_both",
        "inside_sentence_order",
        "inside_bias",
        "data_quality",
        "compress",
        "prune",
        "drift",
        "instruction_mix",
        "constitution",
        "react",
        "adapter_costs",
        "student",
        "start_distillation",
        "grpo_group",
        "save_capsule",
        "load_capsule",
        "save_chat_capsule",
        "load_chat_capsule",
        "save_rag_capsule",
        "load_rag_capsule",
        "save_reason_capsule",
        "load_reason_capsule",
        "save_comparison_capsule",
        "load_comparison_capsule",
        "save_finetune_job_capsule",
        "save_reward_job_capsule",
        "save_dpo_job_capsule",
        "save_classify_job_capsule",
        "save_distill_job_capsule",
        "load_finetune_job_capsule",
        "load_reward_job_capsule",
        "load_dpo_job_capsule",
        "load_classify_job_capsule",
        "load_distill_job_capsule",
    ]
)


def test_every_named_endpoint_is_called_by_some_api_test(app_url, files):
    named = Client(app_url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]
    source = "\n".join(path.read_text() for path in HERE.glob("test_*.py"))
    table = set(_cases(files))
    assert table == set(ENDPOINTS)
    missing = [name for name in named if name.lstrip("/") not in table and f'"{name}"' not in source]
    assert not missing, f"endpoints without an API test: {missing}"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_endpoint_answers_clearly(app_url, files, endpoint):
    arguments, expected = _cases(files)[endpoint]
    client = Client(app_url, verbose=False)
    try:
        text = "OK " + str(client.predict(**arguments, api_name=f"/{endpoint}"))
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        text = str(error)
    assert "has not enabled verbose error reporting" not in text
    assert re.search(expected, text), text
    # the app keeps serving after every refusal
    assert client.predict(api_name="/preference_stats")[0]
