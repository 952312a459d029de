"""Personal data found before a document is indexed or a file trained on: each kind, masked in the
report, no alarms on the bundled text, refused on request, bounded on a huge input."""

from __future__ import annotations

import json

import pytest

from pipelines.config import ASSETS, DATASETS
from pipelines.rag import store
from pipelines.store import personal_data
from pipelines.train import sft_data

PRIVATE = (
    "Contact Mary Johnson at mary.johnson@example.com or call (415) 555-2671, or from abroad +44 20 7946 0958. "
    "Card 4111 1111 1111 1111. Dr. Patel will confirm."
)


def _found(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in personal_data.scan(text)]


def test_each_kind_is_found():
    assert _found(PRIVATE) == [
        ("name", "Mary Johnson"),
        ("email", "mary.johnson@example.com"),
        ("phone", "(415) 555-2671"),
        ("phone", "+44 20 7946 0958"),
        ("card", "4111 1111 1111 1111"),
        ("name", "Dr. Patel"),
    ]


@pytest.mark.parametrize(
    "innocent",
    [
        "Order 2147483647 shipped; ticket 24824-24837.",  # ids, not phone numbers
        "Reference 1471251567204794 and 4111 1111 1111 1112.",  # no card network starts with 1; bad checksum
        "The Eiffel Tower and the Golden Gate Bridge. Grace Period ends soon.",
        "Write to us at support@ or call 555-0100.",  # not an address; a fictional number
    ],
)
def test_lookalikes_are_not_flagged(innocent):
    assert _found(innocent) == []


def test_the_bundled_text_is_clean_and_the_census_lists_are_installed():
    assert len(personal_data.first_names()) > 3000 and len(personal_data.surnames()) > 80_000
    for path in (DATASETS / "general_text.txt", DATASETS / "raw_web_sample.txt", ASSETS / "documents"):
        files = sorted(path.glob("*")) if path.is_dir() else [path]
        for file in files:
            assert _found(file.read_text(encoding="utf-8")) == [], file


def test_the_report_masks_what_it_found():
    report = personal_data.summary(personal_data.scan(PRIVATE))
    assert report["counts"] == {"email": 1, "phone": 2, "card": 1, "name": 2} and report["total"] == 6
    shown = json.dumps(report) + personal_data.described(report)
    for secret in ("mary.johnson", "555-2671", "7946", "4111 1111", "Johnson", "Patel"):
        assert secret not in shown
    assert "1 e-mail address" in personal_data.described(
        report
    ) and "2 phone numbers" in shown + personal_data.described(report)


def test_redaction_replaces_each_finding_by_its_kind():
    assert personal_data.redact("Mail jo@example.com or call (415) 555-2671.") == "Mail [EMAIL] or call [PHONE]."


def test_a_huge_text_is_scanned_in_bounded_time():
    huge = ("word " * 200 + "x@example.com ") * 5_000  # 5 MB
    found = personal_data.scan(huge)
    assert len(found) == personal_data.MAX_CHARS // len("word " * 200 + "x@example.com ")  # only the first MAX_CHARS


def test_a_document_with_personal_data_is_reported_or_refused(data_dir, tmp_path):
    doc = tmp_path / "contacts.md"
    doc.write_text("# Team\n\n" + PRIVATE + "\n\nThe lamp has a two-year warranty.\n", encoding="utf-8")
    plain = tmp_path / "lamp.md"
    plain.write_text("# Lamp\n\nThe Northwind lamp has a two-year warranty and a dimmer.\n", encoding="utf-8")
    store.create("private")
    refused = store.ingest("private", [(doc, doc.name), (plain, plain.name)], refuse_personal_data=True)
    assert [item["file"] for item in refused.ingested] == ["lamp.md"] and "personal_data" not in refused.ingested[0]
    assert refused.errors[0]["file"] == "contacts.md" and "not indexed" in refused.errors[0]["error"]
    assert "mary.johnson" not in refused.errors[0]["error"]
    assert [d.name for d in store.load("private").documents] == ["lamp.md"]
    flagged = store.ingest("private", [(doc, doc.name)])  # the default: indexed, and reported
    assert flagged.ingested[0]["personal_data"]["counts"]["email"] == 1
    store.create("strict")  # a collection's own policy applies to every later ingestion (UI, API, CLI)
    assert not store.refuses_personal_data("strict")
    store.set_refuse_personal_data("strict", True)
    assert store.ingest("strict", [(doc, doc.name)]).errors and store.refuses_personal_data("strict")


def test_a_training_file_reports_its_rows_with_personal_data(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"prompt": "hi", "response": "hello"}, {"prompt": "Who?", "response": PRIVATE}]
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    report = sft_data.personal_data_rows(sft_data.load_file(path))
    assert report["rows"] == [2] and report["counts"]["phone"] == 2


def test_the_fine_tune_check_says_which_rows(use_tiny, tmp_path):
    from playground import finetune as tab

    path = tmp_path / "u.jsonl"
    path.write_text(json.dumps({"prompt": "Call me", "response": PRIVATE}) + "\n", encoding="utf-8")
    summary = tab.check_data(str(path), None, 512)[0]
    assert "Personal data in 1 rows** (1)" in summary and "555-2671" not in summary


def test_numbers_without_a_country_code_are_read_in_the_configured_region(data_dir, monkeypatch):
    from pipelines import config
    from pipelines.errors import ConfigError

    london = "Ring the office on 020 7946 0958 tomorrow."
    assert _found(london) == []  # not a valid US number
    monkeypatch.setenv("PLAYGROUND_PHONE_REGION", "gb")
    config.reset_settings()
    assert _found(london) == [("phone", "020 7946 0958")]
    monkeypatch.setenv("PLAYGROUND_PHONE_REGION", "Britain")
    config.reset_settings()
    with pytest.raises(ConfigError, match="two-letter country code"):
        config.get_settings()
    monkeypatch.delenv("PLAYGROUND_PHONE_REGION")
    config.reset_settings()


def test_the_ingest_command_reports_and_refuses(data_dir, tmp_path, capsys):
    from pipelines.cli import main

    doc = tmp_path / "contacts.txt"
    doc.write_text(PRIVATE, encoding="utf-8")
    assert main(["rag", "ingest", "--collection", "cli", str(doc), "--refuse-personal-data", "--json"]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["ingested"] == [] and refused["errors"][0]["personal_data"]["counts"]["card"] == 1
    assert main(["rag", "ingest", "--collection", "cli", str(doc), "--json"]) == 0
    ingested = json.loads(capsys.readouterr().out)["ingested"][0]
    assert ingested["personal_data"]["total"] == 6 and "mary" not in json.dumps(ingested).lower()
