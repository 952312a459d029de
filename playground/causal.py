"""Inside the model › Heads, Patching, Steering: the panels where a student tests a cause instead of looking.

Each is one call into `pipelines.inside.heads`, `.patching` or `.steering` on the loaded model (with the
sidebar's adapter). Grids are dataframes coloured per cell, so a click on a cell is an ordinary select
event: a head's cell opens its attention pattern, a patching cell its next-token distribution.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.engine import models
from pipelines.inside import attention as attention_weights
from pipelines.inside import heads, patching, steering

from . import inside as views  # its token marks and attention heatmap (it builds these panels: read at call time)
from .sidebar import Shared, selected_adapter
from .spec_controls import control

SCORE_LABELS = {"induction": "induction", "previous_token": "previous token", "sink": "sink (first token)"}
PLACE_LABELS = {"residual": "residual stream", "attention": "attention output", "mlp": "MLP output"}
SHOWN = 10  # characters of a token in a column header


def _shown(piece: str) -> str:
    return piece.translate(views.BPE_MARKS)[:SHOWN]


def _shade(value: float, colour: str = "234, 88, 12") -> str:
    alpha = max(0.0, min(1.0, float(value)))
    ink = "#fff" if alpha > 0.6 else "inherit"
    return f"background-color: rgba({colour}, {alpha:.2f}); color: {ink}"


# --- heads ---------------------------------------------------------------------------------------------


def heads_grid(report: dict[str, Any], score: str) -> Any:
    """Layers x heads, each cell the head's score (coloured by it)."""
    n = report["heads_per_layer"]
    heads_ = [f"H{h}" for h in range(n)]
    table = pd.DataFrame(
        [
            [f"L{layer}", *(h[score] for h in report["heads"][layer * n : (layer + 1) * n])]
            for layer in range(report["layers"])
        ],
        columns=["layer", *heads_],
    )
    return table.style.map(_shade, subset=heads_).format("{:.2f}", subset=heads_)


def heads_table(report: dict[str, Any]) -> pd.DataFrame:
    table = pd.DataFrame(report["heads"])[["layer", "head", *heads.SCORES]]
    return table.rename(columns=SCORE_LABELS).sort_values("induction", ascending=False)


def scan_heads(score: str, refresh: bool, adapter: str | None) -> tuple[Any, pd.DataFrame, str, dict[str, Any]]:
    report = heads.scan(models.get_handle(), adapter=selected_adapter(adapter), refresh=bool(refresh))
    took = "from the cache" if report["cached"] else "just scanned"
    best = "; ".join(
        f"**{SCORE_LABELS[name]}**: "
        + ", ".join(f"L{h['layer']}.H{h['head']} ({h[name]:.2f})" for h in heads.top(report, name, 3))
        for name in heads.SCORES
    )
    note = (
        f"{report['layers'] * report['heads_per_layer']} heads ({report['layers']} layers × {report['heads_per_layer']}), "
        f"{took} (the scan took {report['seconds']:.1f} s). Highest — {best}. Click a cell of the grid or a row of the "
        "table to see that head's attention on your prompt."
    )
    return heads_grid(report, score), heads_table(report), note, report


def regrid(score: str, report: dict[str, Any] | None) -> Any:
    return heads_grid(report, score) if report else gr.update()


def _head_pattern(prompt: str, layer: int, head: int, adapter: str | None) -> tuple[str, str]:
    found = attention_weights(models.get_handle(), prompt, layer=layer, head=head, adapter=selected_adapter(adapter))
    return views.attention_html(found), f"Layer {layer}, head {head} on your prompt: row = query token, column = key."


def head_from_grid(
    prompt: str, report: dict[str, Any] | None, adapter: str | None, event: gr.SelectData
) -> tuple[Any, str]:
    if not report or not isinstance(event.index, (list, tuple)):
        return gr.update(), "Scan the heads first."
    layer, column = int(event.index[0]), int(event.index[1])
    if column == 0:  # the layer's own label
        return gr.update(), "Click a head's cell (H0, H1, …) to see its pattern."
    return _head_pattern(prompt, layer, column - 1, adapter)


def head_from_table(prompt: str, adapter: str | None, event: gr.SelectData) -> tuple[Any, str]:
    row = event.row_value
    if not row or len(row) < 2:
        return gr.update(), "Click a row of the table."
    return _head_pattern(prompt, int(row[0]), int(row[1]), adapter)


def build_heads(shared: Shared) -> dict[str, gr.Textbox]:
    gr.Markdown(
        "Every head of the model scored for three jobs, from one pass over a fixed probe: **induction** (on a random "
        "sequence repeated, attending to the token that followed the same token last time), **previous token**, and "
        "**sink** (parking attention on the first token). Cached per weights: a second scan is instant."
    )
    with gr.Row():
        score = gr.Radio(
            [(label, name) for name, label in SCORE_LABELS.items()],
            value="induction",
            label="Colour the grid by",
            scale=3,
        )
        refresh = gr.Checkbox(label="scan again (ignore the cache)", scale=1)
        scan_button = gr.Button("Scan the heads", variant="primary", scale=1)
    note = gr.Markdown(elem_id="heads-note")
    grid = gr.Dataframe(label="Layer × head (click a cell)", interactive=False, elem_id="heads-grid", max_height=480)
    table = gr.Dataframe(
        label="Every head (click a header to sort; click a row)",
        interactive=False,
        max_height=320,
        elem_id="heads-table",
    )
    prompt = gr.Textbox(
        label="Your prompt (a repeated phrase shows induction)",
        value="The cat sat on the mat. The cat sat on the mat.",
        elem_id="heads-prompt",
    )
    pattern = gr.HTML(elem_id="heads-pattern")
    pattern_note = gr.Markdown()
    report = gr.State(None)
    adapter = shared.adapter
    scan_button.click(scan_heads, [score, refresh, adapter], [grid, table, note, report], api_name="inside_heads")
    score.change(regrid, [score, report], grid, api_visibility="private", show_progress="hidden")
    grid.select(head_from_grid, [prompt, report, adapter], [pattern, pattern_note], api_visibility="private")
    table.select(head_from_table, [prompt, adapter], [pattern, pattern_note], api_visibility="private")
    return {"heads_prompt": prompt}


# --- activation patching ---------------------------------------------------------------------------------


def patch_grid(report: dict[str, Any], place: str) -> Any:
    """Layers x positions, each cell the recovered share of the logit difference (1 = clean, 0 = corrupt)."""
    values = report["recovered"][place]
    clean = report["clean_positions"]
    columns = []
    for index, (token, other) in enumerate(zip(report["positions"], clean, strict=True)):
        label = (
            _shown(token["piece"])
            if token["id"] == other["id"]
            else f"{_shown(other['piece'])}→{_shown(token['piece'])}"
        )
        columns.append(f"{index}: {label}")
    table = pd.DataFrame([[f"L{layer}", *row] for layer, row in zip(report["layers"], values, strict=True)])
    table.columns = ["layer", *columns]
    return table.style.map(lambda v: _shade(v, "37, 99, 235"), subset=columns).format("{:.2f}", subset=columns)


def _distribution(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"`{html.escape(r['token'].translate(views.BPE_MARKS))}` {r['prob']:.2f}" for r in rows[:5])


def run_patch(
    clean: str, corrupt: str, target: str, foil: str, more: bool, adapter: str | None
) -> tuple[Any, str, dict[str, Any], Any]:
    places = tuple(patching.PLACES) if more else ("residual",)
    report = patching.patch(
        models.get_handle(),
        clean,
        corrupt,
        target=target,
        foil=foil.strip() or None,
        places=places,
        adapter=selected_adapter(adapter),
    )
    t, f = report["target"]["token"].translate(views.BPE_MARKS), report["foil"]["token"].translate(views.BPE_MARKS)
    note = (
        f"Metric: logit(`{t}`) − logit(`{f}`) at the last position — clean run **{report['clean_logit_diff']:.2f}**, "
        f"corrupted run **{report['corrupt_logit_diff']:.2f}**. Each cell: the share of that difference recovered when "
        "the clean run's activation at that layer and position is written into the corrupted run (1 = the clean answer "
        "back, 0 = no effect). Click a cell to see the patched next-token distribution.\n\n"
        f"Clean run's next tokens: {_distribution(report['clean_top'])}. Corrupted: {_distribution(report['corrupt_top'])}."
    )
    choices = [(PLACE_LABELS[p], p) for p in report["grids"]]
    kept = {**report, "request": {"clean": clean, "corrupt": corrupt, "target": target, "foil": foil.strip() or None}}
    return patch_grid(report, "residual"), note, kept, gr.update(choices=choices, value="residual", interactive=True)


def show_place(place: str, report: dict[str, Any] | None) -> Any:
    return patch_grid(report, place) if report and place in report.get("recovered", {}) else gr.update()


def patch_cell(place: str, report: dict[str, Any] | None, adapter: str | None, event: gr.SelectData) -> str:
    if not report or not isinstance(event.index, (list, tuple)):
        return "Patch first, then click a cell."
    layer, column = int(event.index[0]), int(event.index[1])
    if column == 0:  # the layer's own label
        return "Click a position's cell to patch that one activation."
    position = column - 1
    request = report["request"]
    cell = patching.patch_one(
        models.get_handle(),
        request["clean"],
        request["corrupt"],
        target=request["target"],
        foil=request["foil"],
        layer=layer,
        position=position,
        place=place,
        adapter=selected_adapter(adapter),
    )
    rows = "\n".join(
        f"| {i + 1} | `{html.escape(c['token'].translate(views.BPE_MARKS))}` {c['prob']:.3f} | "
        f"`{html.escape(p['token'].translate(views.BPE_MARKS))}` {p['prob']:.3f} | "
        f"`{html.escape(k['token'].translate(views.BPE_MARKS))}` {k['prob']:.3f} |"
        for i, (c, p, k) in enumerate(zip(cell["corrupt_top"], cell["patched_top"], cell["clean_top"], strict=True))
    )
    return (
        f"**Layer {layer}, position {position} (`{html.escape(cell['token'].translate(views.BPE_MARKS))}`), "
        f"{PLACE_LABELS[place]} patched**: logit difference {cell['corrupt_logit_diff']:.2f} → **{cell['logit_diff']:.2f}** "
        f"(clean {cell['clean_logit_diff']:.2f}).\n\n| # | corrupted run | patched | clean run |\n|---|---|---|---|\n{rows}"
    )


def build_patching(shared: Shared) -> dict[str, gr.Textbox]:
    gr.Markdown(
        "Two prompts of the same length that differ in one fact. The clean run's activation at one layer and position "
        "is written into the corrupted run: where that brings the clean answer back, that activation carries the fact."
    )
    with gr.Row():
        clean = gr.Textbox(label="Clean prompt", value="The Eiffel Tower is in the city of", scale=3)
        corrupt = gr.Textbox(
            label="Corrupted prompt (same number of tokens)", value="The Colosseum is in the city of", scale=3
        )
    with gr.Row():
        target = gr.Textbox(label="Target (the clean answer, one token)", value=" Paris", scale=1)
        foil = gr.Textbox(label="Foil (optional; default: the corrupted run's answer)", value="", scale=1)
        more = gr.Checkbox(label="also the attention and MLP outputs (3× the time)", scale=1)
        patch_button = gr.Button("Patch every layer and position", variant="primary", scale=1)
    note = gr.Markdown(elem_id="patch-note")
    place = gr.Radio([(PLACE_LABELS["residual"], "residual")], value="residual", label="Show", interactive=False)
    grid = gr.Dataframe(
        label="Recovered share: layer × position (click a cell)", interactive=False, elem_id="patch-grid"
    )
    cell = gr.Markdown(elem_id="patch-cell")
    report = gr.State(None)
    adapter = shared.adapter
    patch_button.click(
        run_patch, [clean, corrupt, target, foil, more, adapter], [grid, note, report, place], api_name="inside_patch"
    )
    place.change(show_place, [place, report], grid, api_visibility="private", show_progress="hidden")
    grid.select(patch_cell, [place, report, adapter], cell, api_visibility="private")
    return {"patch_clean": clean, "patch_corrupt": corrupt, "patch_target": target, "patch_foil": foil}


# --- steering --------------------------------------------------------------------------------------------


def projection_html(tokens: list[dict[str, Any]], prompt_tokens: int) -> str:
    """Each token shaded by its stream's projection on the vector: green towards the positive set, red away."""
    scale = max((abs(t["value"]) for t in tokens), default=1.0) or 1.0
    spans = []
    for index, token in enumerate(tokens):
        value = token["value"] / scale
        colour = "22, 163, 74" if value >= 0 else "220, 38, 38"
        mark = " prompt" if index < prompt_tokens else ""
        text = html.escape(token["text"]).replace("\n", "⏎")
        spans.append(
            f"<span class='tok proj{mark}' style='background: rgba({colour}, {abs(value) * 0.7:.2f})' "
            f"title='projection {token['value']:+.2f}'>{text}</span>"
        )
    return f"<div class='tok-row'>{''.join(spans)}</div>"


def run_steer(
    positive: str,
    negative: str,
    prompt: str,
    layer: float,
    strength: float,
    new_tokens: float,
    temperature: float,
    seed: float,
    adapter: str | None,
) -> tuple[str, str, str]:
    spec = steering.SteerSpec(
        layer=int(layer),
        strength=float(strength),
        max_new_tokens=int(new_tokens),
        temperature=float(temperature),
        seed=int(seed),
    )
    plus = steering.prompts_from_text(positive, "positive")
    minus = steering.prompts_from_text(negative, "negative")
    handle = models.get_handle()
    found = steering.vector(handle, plus, minus, layer=spec.layer, adapter=selected_adapter(adapter))
    report = steering.steer(handle, prompt, found, spec, adapter=selected_adapter(adapter))
    note = (
        f"Vector at layer {report['layer']}: mean of {found.positive} positive minus {found.negative} negative prompts, "
        f"norm {report['vector_norm']:.2f} (the stream's own norm there: {report['residual_norm']:.1f}). Added × "
        f"{report['strength']:g} at every position; both texts sampled with seed {report['seed']}. Tokens are shaded by "
        "their projection on the vector (green: towards the positive set; hover for the value)."
    )
    first = report["prompt_tokens"]
    return (
        projection_html(report["projection"]["steered"], first),
        projection_html(report["projection"]["unsteered"], first),
        note,
    )


def build_steering(shared: Shared) -> tuple[Any, dict[str, gr.Textbox]]:
    """The panel; returns its layer control (narrowed to the model's own layers once it is loaded) and
    its text inputs (kept across reloads)."""
    gr.Markdown(
        "A direction from two sets of prompts — the difference of their mean residual streams at one layer — added "
        "while the model writes. Same prompt, same seed: at strength 0 the two texts are identical."
    )
    positive_set, negative_set = steering.sentiment_sets()
    with gr.Row():
        positive = gr.Textbox(
            label="Towards (one prompt per line)", value="\n".join(positive_set), lines=5, max_lines=8
        )
        negative = gr.Textbox(
            label="Away from (one prompt per line)", value="\n".join(negative_set), lines=5, max_lines=8
        )
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", value="I watched the movie yesterday and", scale=3)
        steer_button = gr.Button("Steer", variant="primary", scale=1)
    with gr.Row():
        knobs = [
            control(steering.SteerSpec, name) for name in ("layer", "strength", "max_new_tokens", "temperature", "seed")
        ]
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Steered**")
            steered = gr.HTML(elem_id="steer-steered")
        with gr.Column():
            gr.Markdown("**Unsteered**")
            unsteered = gr.HTML(elem_id="steer-unsteered")
    note = gr.Markdown(elem_id="steer-note")
    steer_button.click(
        run_steer,
        [positive, negative, prompt, *knobs, shared.adapter],
        [steered, unsteered, note],
        api_name="inside_steer",
    )
    return knobs[0], {"steer_positive": positive, "steer_negative": negative, "steer_prompt": prompt}
