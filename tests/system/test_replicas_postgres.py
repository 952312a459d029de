"""Two `python app.py` replicas on one PostgreSQL: votes through both, one replica SIGKILLed mid-way.

Every acknowledged label must be stored exactly once (each vote is sent through both replicas, as a
load balancer retrying would), the surviving replica keeps serving, and every training job queued
while both run is claimed by exactly one replica (its directory exists in one data directory).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from gradio_client import Client

from pipelines import config
from pipelines.labels import preferences
from pipelines.store import db, jobs
from pipelines.train import finetune
from tests import postgres
from tests.app_process import AppProcess
from tests.helpers import two_response_items, write_sft_rows

pytestmark = [pytest.mark.system, pytest.mark.heavy]  # two app processes and three training jobs: ~1.5 min
CLIENTS = 10


def test_two_replicas_share_one_database_and_survive_a_kill(
    postgres_admin_url, data_dir, tiny_model_env, tmp_path, monkeypatch
):
    monkeypatch.setenv("PLAYGROUND_DATABASE_URL", postgres.fresh_database(postgres_admin_url))
    config.reset_settings()
    items = two_response_items(200)
    db.dispose_all()
    for n in range(2):
        (tmp_path / f"replica-{n}").mkdir()
    replicas = [AppProcess(tmp_path / f"replica-{n}", tiny_model_env) for n in range(2)]
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()

    def voter(number: int) -> None:
        name = f"annotator-{number}"
        clients = [Client(app.url, verbose=False) for app in replicas]
        for item in items[number::CLIENTS]:
            for client in (clients[number % 2], clients[1 - number % 2]):  # the same vote through both
                try:
                    result = client.predict(item_id=item, choice="A", annotator=name, api_name="/vote")
                except Exception:  # noqa: BLE001 - the killed replica fails calls; only acks count
                    continue
                if result["created"]:
                    with lock:
                        acknowledged.append((item, name))

    threads = [threading.Thread(target=voter, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.time() + 120
    while len(acknowledged) < 40 and time.time() < deadline:
        time.sleep(0.05)
    replicas[1].kill()
    killed_at = len(acknowledged)
    for thread in threads:
        thread.join(timeout=300)
    assert killed_at >= 40, "the votes never got going"
    stored = Counter((label.item_id, label.annotator) for item in items for label in preferences.get_item(item).labels)
    assert set(acknowledged) <= set(stored), "an acknowledged label is missing"
    assert max(stored.values()) == 1 and len(acknowledged) == len(set(acknowledged)), "a label was stored twice"
    assert len(stored) == len(items), "the surviving replica took every vote after the kill"

    # jobs queued while two replicas poll the same table: each is claimed by exactly one of them
    replicas[1] = AppProcess(tmp_path / "replica-1", tiny_model_env)
    try:
        rows = write_sft_rows(tmp_path / "rows.jsonl", n=8)
        queued = [
            jobs.submit(
                "finetune",
                f"race-{n}",
                finetune.FinetuneSpec(
                    data=str(rows),
                    out=f"race-{n}",
                    max_steps=1,
                    batch_size=4,
                    max_length=64,
                    eval_samples=1,
                    eval_max_new_tokens=2,
                ).to_dict(),
            ).id
            for n in range(3)
        ]
        deadline = time.time() + 300
        while not all(jobs.get(job).done for job in queued) and time.time() < deadline:
            time.sleep(0.5)
        for job in queued:
            assert jobs.get(job).status == jobs.SUCCEEDED, jobs.get(job).message
            claimed = [n for n in range(2) if (tmp_path / f"replica-{n}" / "jobs" / job).is_dir()]
            assert len(claimed) == 1, f"job {job} was started by replicas {claimed}"
    finally:
        for app in replicas:
            app.kill()
        db.dispose_all()
