"""A label drive through the API: ten annotators at once, an operator's settings and gold marks."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from gradio_client import Client, handle_file

from pipelines.labels import drives, preference_data, preferences
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


def test_an_adversary_below_the_gold_threshold_is_re_served_away(app_url, tmp_path):
    """Issue 37: 10 items x overlap 3 + 2 gold items, 5 careful annotators and 1 who answers wrong,
    at once through /drive_next + /vote, then the careful ones come back for a second round: every
    item ends with 3 counted labels and the majority-consensus export has all of them."""
    operator = Client(app_url, verbose=False)
    operator.predict(name="checked", overlap=3, gold_threshold=0.5, gold_rate=0.3, api_name="/save_drive")
    source = tmp_path / "items.jsonl"
    rows = [{"prompt": f"checked {i}", "responses": [f"right {i}", f"wrong {i}"]} for i in range(10)]
    rows += [{"prompt": f"gold {i}", "chosen": f"right g{i}", "rejected": f"wrong g{i}"} for i in range(2)]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    operator.predict(file=handle_file(str(source)), name="checked", api_name="/add_drive_items")
    errors: list[str] = []

    def annotate(name: str, wrong: bool) -> None:
        client = Client(app_url, verbose=False)
        try:
            while (found := client.predict(drive="checked", annotator=name, api_name="/drive_next"))["item_id"]:
                letters = {r["text"].split()[0]: r["letter"] for r in found["responses"]}
                choice = letters["wrong" if wrong else "right"]
                client.predict(item_id=found["item_id"], choice=choice, annotator=name, api_name="/vote")
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(f"{name}: {error}")

    people = [("adversary", True), *((f"careful-{n}", False) for n in range(5))]
    threads = [threading.Thread(target=annotate, args=person) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for name, wrong in people[1:]:  # the second round: what the adversary's failure opened again
        annotate(name, wrong)
    assert not errors
    report = drives.progress("checked")
    assert report["labels"] == report["labels_needed"] == 30 and report["complete_items"] == 10
    gold = set(drives.gold_answers("checked"))
    regular = {item.id for item in preferences.all_items() if drives.drive_of(item.id) == "checked"} - gold
    careful = Counter(
        lb.item_id for item in preferences.all_items() for lb in item.labels if lb.annotator.startswith("careful")
    )
    assert len(regular) == 10 and all(careful[item] == 3 for item in regular), careful
    found = preference_data.training_rows(options=preference_data.ExportOptions(consensus="majority"))
    exported = {row["item_id"] for row in found.pairs} & regular
    assert len(exported) == 10, "the majority-consensus export has every item (8 of 10 before)"
    db.dispose_all()
