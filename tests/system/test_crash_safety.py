"""Pull the plug: SIGKILL the running app (and its training worker) mid-work, start it again, check nothing is lost.

The app runs as a real `python app.py` process on the tiny model; the test talks to it through
gradio_client and reads the database and files directly afterwards, as an operator would.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import psutil
import pytest
from gradio_client import Client

from pipelines.engine import adapters, generation, models
from pipelines.engine.sampling import SamplingParams
from pipelines.labels import preferences
from pipelines.rag import retrieval, store
from pipelines.store import db, jobs
from pipelines.train import finetune
from tests.app_process import AppProcess
from tests.helpers import make_lora_adapter, two_response_items, write_sft_rows

pytestmark = pytest.mark.system


def _integrity(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "playground.db") as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def test_sigkill_during_label_burst_and_training_loses_nothing_acknowledged(
    data_dir, tiny_model_env, tokenizer, tmp_path
):
    # written before any crash: an adapter and a RAG index that must still load afterwards
    make_lora_adapter(tokenizer, adapters.adapters_dir(), "kept-adapter")
    store.create("kept")
    notes = tmp_path / "notes.txt"
    notes.write_text("The lighthouse keeper Ada polishes the lens every evening at dusk.")
    assert store.ingest("kept", [(notes, "notes.txt")]).ingested
    items = two_response_items(300)
    db.dispose_all()

    # 1. a burst of votes from four clients; SIGKILL while they are still voting
    app = AppProcess(data_dir, tiny_model_env)
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def voter(name: str, mine: list[str]) -> None:
        client = Client(app.url, verbose=False)
        for item in mine:
            if stop.is_set():
                return
            try:
                if client.predict(item_id=item, choice="A", annotator=name, api_name="/vote")["created"]:
                    with lock:
                        acknowledged.append((item, name))
            except Exception:  # noqa: BLE001 - calls in flight when the app dies fail; only acks count
                return

    threads = [threading.Thread(target=voter, args=(f"voter{n}", items[n::4])) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.time() + 120
    while len(acknowledged) < 40 and time.time() < deadline:
        time.sleep(0.05)
    app.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(acknowledged) >= 40, "the burst never got going"
    assert len(acknowledged) < len(items), "the app finished the burst before it was killed"
    assert _integrity(data_dir) == "ok"
    stored = {(label.item_id, label.annotator) for item in items for label in preferences.get_item(item).labels}
    assert set(acknowledged) <= stored
    db.dispose_all()

    # 2. a training job running in its worker; the app and the worker die together (power cut)
    app = AppProcess(data_dir, tiny_model_env)
    job = jobs.submit(
        "finetune",
        "doomed",
        finetune.FinetuneSpec(
            data=str(write_sft_rows(tmp_path / "rows.jsonl")),
            out="doomed",
            max_steps=100_000,
            batch_size=4,
            max_length=64,
            eval_samples=2,
            eval_max_new_tokens=4,
        ).to_dict(),
    )
    deadline = time.time() + 180
    while (running := jobs.get(job.id)).step < 2 and time.time() < deadline:
        assert not running.done, jobs.tail_log(job.id)
        time.sleep(0.3)
    assert running.status == jobs.RUNNING and running.pid
    worker = psutil.Process(running.pid)
    app.kill()
    worker.kill()
    worker.wait(timeout=30)
    assert _integrity(data_dir) == "ok"
    db.dispose_all()

    # 3. start again: the job is reported interrupted with its log, and everything written before loads
    app = AppProcess(data_dir, tiny_model_env)
    try:
        after = jobs.get(job.id)
        assert after.status == jobs.INTERRUPTED and "without finishing" in after.message
        assert "step" in jobs.tail_log(job.id) or "started" in jobs.tail_log(job.id)
        client = Client(app.url, verbose=False)
        vote = client.predict(item_id=items[-1], choice="B", annotator="after-restart", api_name="/vote")
        assert vote["created"]
        assert _integrity(data_dir) == "ok"
    finally:
        app.kill()
    stored = {(label.item_id, label.annotator) for item in items for label in preferences.get_item(item).labels}
    assert set(acknowledged) <= stored and (items[-1], "after-restart") in stored
    store._cache.clear()
    assert retrieval.search("kept", "Who polishes the lens?", k=1)[0].chunk.source == "notes.txt"
    handle = models.load_handle(str(tiny_model_env))
    reply = generation.generate(
        handle, "Hello", SamplingParams(temperature=0, max_new_tokens=3), adapter="kept-adapter"
    )
    assert len(reply.tokens) == 3
