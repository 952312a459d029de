"""A label drive through the API: ten annotators at once, an operator's settings and gold marks."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from gradio_client import Client, handle_file

from pipelines.labels import drives, preferences
from pipelines.store import db

pytestmark = pytest.mark.api

ANNOTATORS = 10
ITEMS = 12
OVERLAP = 3


def test_ten_annotators_at_once_through_the_api(app_url, tmp_path):
    operator = Client(app_url, verbose=False)
    saved = operator.predict(name="class", overlap=OVERLAP, gold_threshold=0.5, api_name="/save_drive")
    assert "Created drive **class**" in saved
    source = tmp_path / "items.jsonl"
    rows = [{"prompt": f"question {i}", "responses": [f"right {i}", f"wrong {i}"]} for i in range(ITEMS)]
    rows.append({"prompt": "gold", "chosen": "right gold", "rejected": "wrong gold"})
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    added = operator.predict(file=handle_file(str(source)), name="class", api_name="/add_drive_items")
    assert f"Added **{ITEMS + 1}** items" in added and "(1 gold)" in added

    served: list[tuple[str, str]] = []
    errors: list[str] = []

    def annotate(name: str) -> None:
        client = Client(app_url, verbose=False)
        try:
            while True:
                found = client.predict(drive="class", annotator=name, api_name="/drive_next")
                if found["item_id"] is None:
                    assert found["progress"]["you"]["available"] == 0
                    return
                served.append((found["item_id"], name))
                right = next(r["letter"] for r in found["responses"] if r["text"].startswith("right"))
                client.predict(item_id=found["item_id"], choice=right, annotator=name, api_name="/vote")
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(f"{name}: {error}")

    threads = [threading.Thread(target=annotate, args=(f"student-{n}",)) for n in range(ANNOTATORS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    assert len(served) == len(set(served)), "an item was served twice to one annotator"
    labels = Counter(label.item_id for item in preferences.all_items() for label in item.labels)
    gold = set(drives.gold_answers("class"))
    assert {n for item, n in labels.items() if item not in gold} == {OVERLAP}, "an item passed its overlap"
    assert [labels[item] for item in gold] == [ANNOTATORS], "every annotator met the gold item"
    table, people = operator.predict(api_name="/drives_view")
    assert table["data"][0][4] == f"{ITEMS * OVERLAP} / {ITEMS * OVERLAP} (100%)"
    assert {row[4] for row in people["data"]} == {"1 of 1"}

    item_id = next(iter(labels.keys() - gold))
    marked = operator.predict(item_id=item_id, answer="B", api_name="/mark_gold")
    assert "is a gold item" in marked
    with pytest.raises(Exception, match="cannot read the answer"):
        operator.predict(item_id=item_id, answer="sideways", api_name="/mark_gold")
    db.dispose_all()
