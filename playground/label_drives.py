"""Preferences › Dataset › Label drives: create a drive, fill it, mark gold items, watch progress.

Annotators meet a drive in the Label tab ("Label drive" mode); this panel is the operator's.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from pipelines.access import alias, get_policy
from pipelines.labels import drives, preference_data, preference_stats, preferences
from pipelines.store.files import copy_upload

from .controls import (
    cleared_first,
    nothing_added,
    on_submit,
    refuse_out_of_range,
    skipped_rows,
)
from .errors import UserError
from .guard import admin_only
from .sidebar import signed_in_user
from .spec_controls import build_spec, controls

ITEM_SUFFIXES = (".jsonl", ".json", ".parquet")
SETTINGS = ("overlap", "gold_threshold", "gold_rate", "lease_minutes", "signed_in_only")


def drives_view(request: gr.Request | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each drive's progress, and each annotator's in each drive; their accuracy on gold items only
    for the operator (an admin). Anonymous annotators appear as aliases."""
    operator = get_policy().is_admin(signed_in_user(request))
    all_drives = drives.all_drives()
    gold = (
        preference_stats.gold_accuracy(preferences.list_items(limit=100_000), drives.gold_answers())
        if all_drives and operator
        else {}
    )
    table, people = [], []
    for drive in all_drives:
        found = drives.progress(drive.name)
        share = "—" if found["share"] is None else f"{found['share']:.0%}"
        table.append(
            [
                drive.name,
                drive.overlap,
                found["items"],
                found["gold_items"],
                f"{found['labels']} / {found['labels_needed']} ({share})",
                found["complete_items"],
                found["annotator_count"],
                drive.gold_threshold,
            ]
        )
        for person in found["annotators"]:
            record = gold.get(person["name"])
            right = f"{record['gold_correct']} of {record['gold_answered']}" if record else "—"
            passes = "—" if record is None else ("yes" if record["gold_accuracy"] >= drive.gold_threshold else "no")
            gold_columns = [right, passes] if operator else []
            people.append([drive.name, alias(person["name"]), person["done"], person["assigned"], *gold_columns])
    return (
        pd.DataFrame(
            table,
            columns=[
                "drive",
                "overlap",
                "items",
                "gold items",
                "labels (counted / needed)",
                "complete",
                "annotators",
                "gold needed",
            ],
        ),
        pd.DataFrame(
            people,
            columns=["drive", "annotator", "done", "assigned"] + (["gold right", "exported"] if operator else []),
        ),
    )


@admin_only("create label drives")
def save_drive(
    name: str,
    shown: str | None = None,
    overlap: float = 1,
    gold_threshold: float = 0.0,
    gold_rate: float = 0.1,
    lease_minutes: float = 30.0,
    signed_in_only: bool = False,
    request: gr.Request | None = None,
) -> str:
    """Create a drive, or change the settings of the one with this name (a number the form shows out of its
    range is refused, not clamped silently: `shown`, filled in the browser)."""
    refuse_out_of_range(shown)
    settings = build_spec(
        drives.DriveSettings,
        {
            "overlap": overlap,
            "gold_threshold": gold_threshold,
            "gold_rate": gold_rate,
            "lease_minutes": lease_minutes,
            "signed_in_only": signed_in_only,
        },
    )
    drive, created = drives.save(name, settings, created_by=signed_in_user(request))
    verb = "Created" if created else "Updated"
    return (
        f"{verb} drive **{html.escape(drive.name)}**: {drive.overlap} annotator(s) per item. Annotators pick it in "
        "Label › Prompts › *Label drive*."
    )


@admin_only("add items to label drives")
def add_drive_items(file: str | None, name: str, request: gr.Request | None = None) -> str:
    """Items from a file: prompt + responses (+ gold answer), or trl pairs (gold: the chosen one)."""
    if not name or not name.strip():
        raise UserError("Name the drive to add items to (create it first).")
    if not file:
        raise UserError("Choose a JSONL or Parquet file of items.")
    with tempfile.TemporaryDirectory() as tmp:
        copied = copy_upload(file, Path(tmp), max_bytes=200_000_000, allowed_suffixes=ITEM_SUFFIXES)
        found = preference_data.import_drive_items(copied, name.strip())
    if not found.imported:  # "Added 0 items" said nothing about why
        raise UserError(nothing_added(found.errors, "items"))
    return f"Added **{found.imported}** items to **{html.escape(name.strip())}** ({found.gold} gold)." + skipped_rows(
        found.errors
    )


@admin_only("mark gold items")
def mark_gold(item_id: str, answer: str, request: gr.Request | None = None) -> str:
    """Give a drive's item its known answer (empty answer: an ordinary item again)."""
    item_id = (item_id or "").strip()
    if not item_id:
        raise UserError("Give the id of a drive's item (see Recent items).")
    item = preferences.get_item(item_id)
    known = preference_data.parse_answer(answer, len(item.responses)) if answer and answer.strip() else None
    drive = drives.set_gold(item_id, known)
    if known is None:
        return f"Item {html.escape(item_id)} of **{html.escape(drive)}** is an ordinary item again."
    return f"Item {html.escape(item_id)} of **{html.escape(drive)}** is a gold item: answer **{html.escape(answer.strip())}**."


def build(demo: gr.Blocks, refresh: gr.Button) -> None:
    with gr.Accordion("Label drives", open=False, elem_id="drives-box"):
        gr.Markdown(
            "A drive hands each annotator the next item that still needs labels, until every item has *overlap* "
            "labels; a served item is held for its annotator for a while, then offered to others. Gold items (known "
            "answer) are mixed in unannounced and measure each annotator; exports leave out annotators below the "
            "drive's *gold accuracy needed*."
        )
        with gr.Row():
            table = gr.Dataframe(label="Drives", interactive=False)
            people = gr.Dataframe(label="Annotators per drive", interactive=False)
        with gr.Row():
            with gr.Column(elem_id="drive-settings"):
                gr.Markdown("#### Create or change a drive (admin)")
                name = gr.Textbox(label="Drive name", max_lines=1, elem_id="drive-name")
                settings = controls(drives.DriveSettings, SETTINGS)
                save_button = gr.Button("Save drive", elem_id="drive-save")
                saved = gr.Markdown()
            with gr.Column():
                gr.Markdown(
                    '#### Add items (admin)\n<span class=\'muted\'>JSONL/Parquet rows `{"prompt", "responses": '
                    '[text or {text, source}], "gold"?: "A" | "B" | "tie" | "both bad" | "B > A"}`; a trl '
                    "pair row (prompt, chosen, rejected) is a gold item whose answer is the chosen response.</span>"
                )
                items_file = gr.File(
                    label="Items file", file_types=list(ITEM_SUFFIXES), type="filepath", elem_id="drive-items"
                )
                added = gr.Markdown()
                gr.Markdown("#### Mark a gold item (admin)")
                with gr.Row():
                    gold_item = gr.Textbox(label="Item id", max_lines=1, scale=2)
                    gold_answer = gr.Textbox(
                        label="Known answer", placeholder="A, B, tie, both bad, B > A = C", scale=2
                    )
                    gold_button = gr.Button("Mark", scale=1)
                marked = gr.Markdown()
    view = [table, people]
    gr.on([refresh.click, demo.load], drives_view, None, view, api_name="drives_view")
    on_submit(
        save_button, save_drive, [name], saved, form="drive-settings", settings=dict(settings), api_name="save_drive"
    ).then(drives_view, None, view, api_visibility="private")
    cleared_first([items_file.upload], [added]).then(
        add_drive_items, [items_file, name], added, api_name="add_drive_items"
    ).then(drives_view, None, view, api_visibility="private")
    gold_button.click(mark_gold, [gold_item, gold_answer], marked, api_name="mark_gold").then(
        drives_view, None, view, api_visibility="private"
    )
