"""Preferences › Dataset: what the labels add up to, and their export, import, Hub push and deletion."""

from __future__ import annotations

import html
import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from pipelines.access import alias, get_policy
from pipelines.labels import agreement, backup, drives, preference_data, preference_stats, preferences
from pipelines.store.files import copy_upload

from . import drift as drift_panel
from . import label_drives
from .controls import cleared_first, nothing_added, rounded, skipped_rows
from .errors import UserError
from .guard import admin_only
from .sidebar import signed_in_user

IMPORT_SUFFIXES = (".jsonl", ".json", ".parquet")


def dataset_view(request: gr.Request | None = None):
    """Totals and quality signals, labels per annotator, and the source leaderboard.

    Anonymous annotators appear as aliases; accuracy on gold items only to the operator (an admin):
    to anyone else it would say which of their votes were checks, and how they answered."""
    operator = get_policy().is_admin(signed_in_user(request))
    items = preferences.list_items(limit=100_000)
    st = preference_stats.stats(items)

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.0%}"

    found = agreement.agreement(items)
    text = (
        f"**{st['items']}** items, **{st['labels']}** labels ({st['labelled_items']} items labelled).  \n"
        f"Agreement between annotators on shared items: **{pct(found['raw'])}** over {found['vote_pairs']} pairs of votes.  \n"
        f"Position bias: the left response (A) won **{pct(st['left_wins'])}** of {st['decisive_votes']} decisive A/B votes "
        f"(50% means no bias).  \nTie rate **{pct(st['tie_rate'])}**, both-bad rate **{pct(st['both_bad_rate'])}**."
    )
    alpha = found["krippendorff_alpha"]
    text += (
        f"  \nKrippendorff's α (ordinal: A better < tie < B better; both-bad counts as a tie): "
        f"**{'—' if alpha is None else f'{alpha:.2f}'}** (1 = perfect, 0 = chance)"
        + (f"; {found['excluded']} rankings and thumbs are not on that scale" if found["excluded"] else "")
        + "."
    )
    backups = backup.status_line()
    if backups:
        text += f"  \n{backups}"
    bias = {row["annotator"]: row["left_wins"] for row in found["position_bias"]}
    gold = preference_stats.gold_accuracy(items, drives.gold_answers()) if operator else {}
    annotators = pd.DataFrame(
        [
            [alias(name), n, pct(bias.get(name))]
            + (
                [f"{gold[name]['gold_correct']} of {gold[name]['gold_answered']}" if name in gold else "—"]
                if operator
                else []
            )
            for name, n in st["per_annotator"].items()
        ],
        columns=["annotator", "labels", "left (A) wins"] + (["gold right"] if operator else []),
    )
    pairs = pd.DataFrame(
        [
            [" & ".join(map(alias, p["annotators"])), p["shared_items"], round(p["raw"], 3), rounded(p["cohen_kappa"])]
            for p in found["pairs"]
        ],
        columns=["annotators", "shared items", "raw agreement", "Cohen's κ"],
    )
    ratings = preference_stats.leaderboard(items)
    board = pd.DataFrame(
        ratings, columns=["source", "rating", "ci_low", "ci_high", "wins", "losses", "ties", "comparisons"]
    )
    if not ratings:
        text += f"  \nLeaderboard: {preference_stats.leaderboard_gap(items)}"
    matrix = preference_stats.win_rates(items)
    wins = pd.DataFrame(
        [
            [a, *(("—" if r is None else f"{r:.0%} of {n}") for r, n in zip(rates, counts, strict=False))]
            for a, rates, counts in zip(matrix["sources"], matrix["win_rate"], matrix["comparisons"], strict=False)
        ],
        columns=["row beat column", *matrix["sources"]],
    )
    recent = pd.DataFrame(
        [
            [
                i.id,
                i.prompt_text[:80],
                len(i.responses),
                ", ".join(f"{alias(lb.annotator)}: {lb.describe()}" for lb in i.labels),
            ]
            for i in items[:50]
        ],
        columns=["item", "prompt", "responses", "votes"],
    )
    return text, annotators, board, forest_plot(ratings), wins, pairs, recent


def forest_plot(ratings: list[dict]) -> str:
    """Chatbot Arena's plot: each source's rating with its bootstrap 95% interval, on one axis."""
    if not ratings:
        return ""
    low = min(r["ci_low"] for r in ratings if r["ci_low"] == r["ci_low"])
    high = max(r["ci_high"] for r in ratings if r["ci_high"] == r["ci_high"])
    span = max(high - low, 1.0)

    def at(value: float) -> float:
        return 100 * (value - low) / span

    rows = []
    for r in ratings:
        left, right = at(r["ci_low"]), at(r["ci_high"])
        rows.append(
            f"<div class='forest-row'><span class='forest-name'>{html.escape(r['source'])}</span>"
            f"<span class='forest-axis'><span class='forest-ci' style='left:{left:.1f}%;width:{max(right - left, 0.5):.1f}%'>"
            f"</span><span class='forest-dot' style='left:{at(r['rating']):.1f}%'></span></span>"
            f"<span class='forest-value'>{r['rating']:.0f} [{r['ci_low']:.0f}, {r['ci_high']:.0f}]</span></div>"
        )
    return (
        "<div class='forest'>" + "".join(rows) + f"<p class='muted'>rating (dot) and bootstrap 95% interval (bar), "
        f"axis {low:.0f} to {high:.0f}; intervals that overlap do not separate the sources.</p></div>"
    )


EVERY_LABEL = "every label"
CONSENSUS_CHOICES = (EVERY_LABEL, *preference_data.CONSENSUS_RULES)


@admin_only("export preference data")
def export_labels(
    fmt: str, consensus: str = EVERY_LABEL, consensus_ties: str = "count", request: gr.Request | None = None
) -> str:
    """Write the labels in trl's format with their provenance: every (gold-filtered) label, or one
    consensus row per item."""
    if consensus not in CONSENSUS_CHOICES:
        raise UserError(f"Rows: choose one of {', '.join(CONSENSUS_CHOICES)}.")
    options = preference_data.ExportOptions(
        consensus=None if consensus == EVERY_LABEL else consensus, consensus_ties=consensus_ties
    )
    folder = Path(tempfile.mkdtemp(prefix="prefs-export-"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if fmt == "dataset":
        import shutil

        target = folder / f"preferences-{stamp}"
        preference_data.export(target, "dataset", options)
        return shutil.make_archive(str(target), "zip", root_dir=folder, base_dir=target.name)
    suffix = {"jsonl": "jsonl", "parquet": "parquet", "unpaired": "unpaired.jsonl"}[fmt]
    result = preference_data.export(folder / f"preferences-{stamp}.{suffix}", fmt, options)
    left_out = preference_data.left_out(result)
    # say what is in this file; the other kind of row is counted as elsewhere (it was counted as if in the file)
    if fmt == "unpaired":
        held = f"{result['rows']} unpaired rows (ties, both-bad votes and thumbs)"
        other = f" The {result['pairs']} preference pairs are in the JSONL / Parquet export." if result["pairs"] else ""
    else:
        held = f"{result['rows']} preference pairs"
        other = (
            f" {result['unpaired']} unpaired rows (ties, both-bad votes, thumbs) are not pairs: they are in the "
            "Unpaired export."
            if result["unpaired"]
            else ""
        )
    gr.Info(f"Exported {held}.{other}" + (f" Left out: {'; '.join(left_out)}." if left_out else ""))
    return result["path"]


@admin_only("import preference data")
def import_labels(file: str | None, request: gr.Request | None = None) -> str:
    if not file:
        raise UserError("Choose a preference file (JSONL or Parquet in trl's format).")
    with tempfile.TemporaryDirectory() as tmp:
        copied = copy_upload(file, Path(tmp), max_bytes=200_000_000, allowed_suffixes=IMPORT_SUFFIXES)
        result = preference_data.import_file(copied)
    if not result.imported:
        raise UserError(nothing_added(result.errors, "rows"))
    return f"Imported **{result.imported}** rows." + skipped_rows(result.errors)


@admin_only("export preference data")
def push_labels(repo_id: str, token: str, request: gr.Request | None = None) -> str:
    if not repo_id or "/" not in repo_id:
        raise UserError("Give a dataset repository id like 'my-team/preferences'.")
    pushed = preference_data.push_to_hub(repo_id.strip(), token.strip() or None)
    configs = ", ".join(f"`{name}` ({rows} rows)" for name, rows in pushed["configs"].items())
    return (
        f"Pushed to {pushed['url']}: {configs}. Load one with "
        f"`load_dataset({repo_id.strip()!r}, {next(iter(pushed['configs']))!r})`."
    )


@admin_only("delete data")
def delete_item(item_id: str, request: gr.Request | None = None) -> str:
    if not item_id or not item_id.strip():
        raise UserError("Give the id of the item to delete (see the table).")
    if not preferences.delete_item(item_id.strip()):
        raise UserError(f"No item {item_id!r}.")
    return f"Deleted item {html.escape(item_id)} and its votes."


def build(demo: gr.Blocks) -> None:
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm")
    summary = gr.Markdown()
    with gr.Row():
        annotators = gr.Dataframe(label="Labels per annotator", interactive=False)
        pairs = gr.Dataframe(label="Agreement per pair of annotators (shared items)", interactive=False)
    # the summary and the annotators first; the rest folded, each part where it is looked for (issue 42: the
    # tab was as tall as Fine-tune's)
    with gr.Accordion("Sources: leaderboard and win rates", open=False):
        with gr.Row():
            board = gr.Dataframe(
                label="Leaderboard (Bradley–Terry ratings of the sources, bootstrap 95% intervals)", interactive=False
            )
            with gr.Column():
                forest = gr.HTML(elem_id="pref-forest")
                wins = gr.Dataframe(label="Win rate: how often the row's source beat the column's", interactive=False)
    with gr.Accordion("Recent items", open=False):
        recent = gr.Dataframe(label="Recent items", interactive=False, wrap=True, max_height=320)
    label_drives.build(demo, refresh)
    drift_panel.build()  # are recent prompts like the reference?
    with gr.Accordion("Export, import, push to the Hub (admin)", open=False), gr.Row():
        with gr.Column():
            gr.Markdown("#### Export for trl")
            fmt = gr.Radio(
                ["jsonl", "parquet", "dataset", "unpaired"],
                value="jsonl",
                label="Format",
                info="pairs in trl's conversational prompt/chosen/rejected; 'unpaired' = KTO prompt/completion/label",
            )
            gr.Markdown(
                "<span class='muted'>Unpaired rows: a **tie** exports both responses with `label: true` (both "
                "acceptable), **both bad** exports both with `label: false`, 👍/👎 as voted. Ties and both-bad say "
                "nothing about order, so they are never pairs.</span>"
            )
            consensus = gr.Radio(
                list(CONSENSUS_CHOICES),
                value=EVERY_LABEL,
                label="Rows",
                info="every label (gold-filtered), or one row per item where its labels agree (majority / unanimous)",
            )
            consensus_ties = gr.Radio(
                list(preference_data.CONSENSUS_TIES),
                value="count",
                label="Consensus: tie and both-bad votes",
                info="count: answers of their own; ignore: they abstain and the decisive votes decide",
            )
            export_button = gr.Button("Export")
            exported = gr.File(label="Download", interactive=False, height=60)
        with gr.Column():
            gr.Markdown("#### Import")
            import_file = gr.File(
                label="Preference file (JSONL / Parquet)", file_types=list(IMPORT_SUFFIXES), type="filepath"
            )
            imported = gr.Markdown()
        with gr.Column():
            gr.Markdown("#### Push to the Hub (needs network)")
            repo = gr.Textbox(label="Dataset repo", placeholder="team/preferences")
            token = gr.Textbox(label="Token", type="password")
            push_button = gr.Button("Push")
            pushed = gr.Markdown()
    with gr.Accordion("Delete an item (admin)", open=False):
        with gr.Row():
            delete_id = gr.Textbox(label="Item id", scale=3)
            delete_button = gr.Button("Delete", variant="stop", scale=1)
        deleted = gr.Markdown()

    view_outputs = [summary, annotators, board, forest, wins, pairs, recent]
    gr.on([refresh.click, demo.load], dataset_view, None, view_outputs, api_name="preference_stats")
    export_button.click(export_labels, [fmt, consensus, consensus_ties], exported, api_name="export_preferences")
    cleared_first([import_file.upload], [imported]).then(
        import_labels, import_file, imported, api_name="import_preferences"
    ).then(dataset_view, None, view_outputs, api_visibility="private")
    push_button.click(push_labels, [repo, token], pushed, api_name="push_preferences")
    delete_button.click(delete_item, delete_id, deleted, api_name="delete_item").then(
        dataset_view, None, view_outputs, api_visibility="private"
    )
