"""Every upload bomb against a running `python app.py`: each is refused or bounded, and the server's peak memory barely moves.

Issue 17 measured the server at +1.9 GB for a 1 MB DOCX and +1.8 GB for a 46 KB Parquet file; issue 35
+949 MB for a 1,246-byte Parquet file whose rows share one string and +2.2 GB for a JSON list of `{}`. The
high-water mark of the app's resident memory (VmHWM) is read after a warm-up that loads the model
and the embedder, and again after the bombs: it may rise by at most 500 MB in all.
"""

from __future__ import annotations

import json
import sys

import pytest
from gradio_client import Client, handle_file

from tests import bombs
from tests.app_process import AppProcess

pytestmark = [pytest.mark.system, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]
BUDGET = 500 * 2**20


def _error(call) -> str:
    try:
        result = call()
    except Exception as error:  # noqa: BLE001 - the app's refusal arrives as a client exception
        return str(error)
    return json.dumps(result, default=str)


def test_every_bomb_is_refused_within_bounded_memory(data_dir, tiny_model_env, tmp_path):
    app = AppProcess(data_dir, tiny_model_env)
    try:
        client = Client(app.url, verbose=False)
        warm = tmp_path / "warm.md"
        warm.write_text("# Warm-up\n\nThe embedder and the model are loaded by this ordinary document.\n")
        client.predict(name="bombs", chunk_size=200, overlap=40, api_name="/rag_create")
        assert "1 chunks" in str(client.predict(name="bombs", files=[handle_file(str(warm))], api_name="/rag_ingest"))
        client.predict(prompt="Hello", max_new_tokens=4, api_name="/generate")
        baseline = app.peak_rss()

        seen = {}
        docx = bombs.docx_bomb(tmp_path / "report.docx", inflated_mb=1024)
        pdf = bombs.pdf_bomb(tmp_path / "slides.pdf")
        text = bombs.unbroken_text(tmp_path / "wall.txt")
        seen["docx, pdf, unbroken text"] = _error(
            lambda: client.predict(
                name="bombs",
                files=[handle_file(str(docx)), handle_file(str(pdf)), handle_file(str(text))],
                api_name="/rag_ingest",
            )
        )
        parquet = bombs.parquet_bomb(tmp_path / "rows.parquet")
        seen["parquet (fine-tune)"] = _error(
            lambda: client.predict(upload=handle_file(str(parquet)), sample=None, api_name="/check_dataset")
        )
        seen["parquet (preferences)"] = _error(
            lambda: client.predict(file=handle_file(str(parquet)), api_name="/import_preferences")
        )
        for name, bomb in (
            ("shared string", bombs.parquet_shared_string_bomb(tmp_path / "shared.parquet")),
            ("shared 3 MB string", bombs.parquet_shared_string_bomb(tmp_path / "shared3.parquet", string_mb=3)),
            ("list of {}", bombs.json_list_of_empty_objects(tmp_path / "empty.json")),
            ("rows of lists", bombs.jsonl_of_many_lists(tmp_path / "lists.jsonl")),
            ("wide csv", bombs.csv_wide_header(tmp_path / "wide.csv")),
        ):
            seen[f"{name} (fine-tune)"] = _error(
                lambda bomb=bomb: client.predict(upload=handle_file(str(bomb)), sample=None, api_name="/check_dataset")
            )
            if bomb.suffix != ".csv":
                seen[f"{name} (preferences)"] = _error(
                    lambda bomb=bomb: client.predict(file=handle_file(str(bomb)), api_name="/import_preferences")
                )
        deep = bombs.deep_jsonl(tmp_path / "prompts.jsonl", {"prompt": "Hi"})
        seen["deep json (prompt set)"] = _error(
            lambda: client.predict(file=handle_file(str(deep)), name="deep", api_name="/upload_prompt_set")
        )
        deep_chat = tmp_path / "chat.json"
        deep_chat.write_text(bombs.deep_json())
        seen["deep json (chat)"] = _error(
            lambda: client.predict(file=handle_file(str(deep_chat)), api_name="/import_chat")
        )
        questions = tmp_path / "questions.jsonl"
        questions.write_text(
            "".join(json.dumps({"question": "why " * 400, "source": "wall.txt"}) + "\n" for _ in range(3000))
        )
        seen["retrieval questions"] = _error(
            lambda: client.predict(name="bombs", file=handle_file(str(questions)), k=5, api_name="/rag_eval")
        )
        peak = app.peak_rss()
    finally:
        app.kill()

    report = "\n".join(f"{what}: {answer[:300]}" for what, answer in seen.items())
    print(f"peak RSS +{(peak - baseline) / 2**20:.0f} MB\n{report}")
    assert (
        "inflates" in seen["docx, pdf, unbroken text"] and "3,000,000 characters" in seen["docx, pdf, unbroken text"]
    ), report
    assert "wall.txt: " in seen["docx, pdf, unbroken text"] and "chunks" in seen["docx, pdf, unbroken text"], report
    assert "5,000,000 rows" in seen["parquet (fine-tune)"] and "5,000,000 rows" in seen["parquet (preferences)"], report
    assert "nested deeper than 64 levels" in seen["deep json (prompt set)"] + seen["deep json (chat)"], report
    assert "more than 1,000 rows" in seen["retrieval questions"], report
    for name in ("shared string", "shared 3 MB string", "rows of lists"):
        assert "decodes to more than" in seen[f"{name} (fine-tune)"] + seen[f"{name} (preferences)"], report
    assert "more than 200,000 rows" in seen["list of {} (preferences)"], report
    assert "over 1,000,000 characters" in seen["wide csv (fine-tune)"], report
    assert peak - baseline < BUDGET, f"peak RSS rose by {(peak - baseline) / 2**20:.0f} MB\n{report}"
