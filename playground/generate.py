"""Generate tab: streamed completion, the distribution inspector, a per-token view and Compare."""

from __future__ import annotations

import html
import math
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.engine import generation, models, prompts
from pipelines.engine.completion import record_ids
from pipelines.engine.sampling import SamplingParams
from pipelines.replay import record
from pipelines.train import icl_eval

from . import branches, capsule_files, history
from .controls import (
    MODEL_EVENTS,
    STOPS,
    SamplingControls,
    Throttle,
    engine_knob_updates,
    fill_when_model_ready,
    how_it_works,
    sampling_controls,
    show_token,
    stoppable,
    to_params,
    token_html,
    waiting_note,
)
from .errors import UserError
from .sidebar import Shared, selected_adapter

# the inspector's two charts, one above the other; the how-to names them by these titles
RAW_CHART_TITLE = "Model (T = 1), coloured by the filter that cuts it"
FINAL_CHART_TITLE = "What is sampled with your settings"
UI_UPDATE_SECONDS = 0.05  # stream at most ~20 updates/s: the browser, not the model, is the bottleneck
CUT_COLORS = {
    "kept": "#2563eb",
    "top-k": "#f59e0b",
    "top-p": "#ef4444",
    "min-p": "#a855f7",
    "greedy": "#9ca3af",
}
EMPTY_STATE: dict[str, Any] = {}


def _stats(completion: generation.Completion, *, stopped: bool = False) -> str:
    finish = "stopped by you" if stopped else completion.finish_reason
    waiting = waiting_note([completion])
    if waiting and not finish:
        return waiting
    line = (
        f"**{len(completion.tokens)}** tokens · **{completion.tokens_per_second:.1f}** tokens/s · "
        f"prompt {len(completion.prompt_ids)} tokens · seed `{completion.seed}`"
        + (f" · finished: *{finish}*" if finish else " · generating…")
    )
    if finish and not completion.tokens and not stopped:
        why = {
            "eos": "the model's first choice was to end the text",
            "stop": "the text began with one of the stop strings",
        }.get(str(completion.finish_reason), "nothing was generated")
        line += (
            f"  \n<span class='muted'>Empty: {why}. Try a prompt that asks for more (end it mid-sentence), a higher "
            "temperature, or the distribution view at position 0 to see what it would have said.</span>"
        )
    return line


def _state(completion: generation.Completion, prompt: str, adapter: str | None) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "adapter": adapter,
        "prompt_ids": list(completion.prompt_ids),
        "tokens": [t.to_json() for t in completion.tokens],
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        # what a replay capsule needs besides: the settings with the seed actually given, the engine
        "params": completion.params.with_seed(completion.seed).to_dict(),
        "engine": completion.engine,
    }


def run_generation(
    prompt: str, adapter: str | None = None, run_id: str | None = None, **sampling: Any
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Stream a completion: (text so far, stats line, state for the token views); Stop ends it (run_id)."""
    params = to_params(sampling)
    adapter = selected_adapter(adapter)
    if not prompt or not prompt.strip():
        raise UserError("The prompt is empty: type some text or pick a preset.")
    handle = models.get_handle()
    throttle = Throttle(UI_UPDATE_SECONDS)
    completion = None
    for completion in generation.stream(handle, prompt, params, adapter=adapter):
        if STOPS.stopped(run_id):  # the stream ends itself, so its last word is "stopped"
            yield completion.text, _stats(completion, stopped=True), _state(completion, prompt, adapter)
            return
        if throttle.due(final=completion.done, rows=[completion]):
            yield completion.text, _stats(completion), _state(completion, prompt, adapter)


def token_view(state: dict[str, Any]) -> tuple[str, pd.DataFrame]:
    """Generated tokens shaded by probability (hover for details), and the same as a table."""
    tokens = (state or {}).get("tokens") or []
    if not tokens:
        return "<p class='muted'>Generate something to see its tokens.</p>", pd.DataFrame(
            columns=["#", "token", "id", "probability", "logprob", "top alternatives"]
        )
    spans = []
    rows = []
    for index, tok in enumerate(tokens):
        text = token_html(tok["token"])
        if tok.get("logprob") is None:  # forced in a branch of the token tree, not sampled
            title = f"#{index} forced: chosen for this branch, not sampled · click to branch here"
            spans.append(
                f"<span class='tok forced' data-index='{index}' title='{html.escape(title, quote=True)}'>{text}</span>"
            )
            rows.append([index, show_token(tok["token"]), tok["id"], None, None, "forced"])
            continue
        prob = math.exp(tok["logprob"])
        alternatives = ", ".join(f"{show_token(a['token'])} {math.exp(a['logprob']):.2f}" for a in tok["top"])
        title = f"#{index} p={prob:.3f} logprob={tok['logprob']:.2f} | top: {alternatives} · click to branch here"
        hue = int(120 * prob)  # red = surprising, green = expected
        mark = " forced" if tok.get("forced") else ""
        spans.append(
            f"<span class='tok{mark}' data-index='{index}' style='background:hsl({hue},75%,82%)' "
            f"title='{html.escape(title, quote=True)}'>{text}</span>"
        )
        rows.append(
            [index, show_token(tok["token"]), tok["id"], round(prob, 4), round(tok["logprob"], 3), alternatives]
        )
    legend = "<p class='muted'>Shading: <span class='tok' style='background:hsl(0,75%,82%)'>unlikely</span> → <span class='tok' style='background:hsl(120,75%,82%)'>likely</span> (model probability at T = 1). Hover a token for details; click one to branch there (Token tree below).</p>"
    table = pd.DataFrame(rows, columns=["#", "token", "id", "probability", "logprob", "top alternatives"])
    return legend + "<div class='token-view'>" + "".join(spans) + "</div>", table


def _context(prompt: str, state: dict[str, Any], position: int, adapter: str | None) -> tuple[list[int], str]:
    """Token ids before the chosen position, and a sentence saying where that is."""
    handle = models.get_handle()
    state = state or {}
    if state.get("prompt") == prompt and state.get("adapter") == adapter and state.get("tokens"):
        tokens = state["tokens"]
        position = max(0, min(int(position or 0), len(tokens)))
        ids = state["prompt_ids"] + record_ids(handle.tokenizer, tokens[:position])
        if position < len(tokens):
            chosen = tokens[position]
            shown = html.escape(show_token(chosen["token"]))
            if chosen.get("logprob") is None:  # typed into a branch of the token tree: never offered by the model
                where = (
                    f"After the prompt and {position} generated token(s); the token here, **{shown}**, was typed "
                    "for this branch (forced, not sampled: the model did not offer it among its alternatives)."
                )
            else:
                where = (
                    f"After the prompt and {position} generated token(s); the token actually sampled here was "
                    f"**{shown}** (p = {math.exp(chosen['logprob']):.3f} at T = 1)."
                )
        else:
            where = f"After the prompt and all {position} generated tokens."
        return ids, where
    if not prompt or not prompt.strip():
        raise UserError("The prompt is empty: type some text or pick a preset.")
    return generation.encode(handle, prompt), "Right after the prompt."


def _with_every_filter(labels: list[str], probs: list[float], filters: list[str]) -> pd.DataFrame:
    """Chart data with a zero-height bar for each filter absent from it.

    The chart fixes its colour legend from the categories in the data, so every category must
    always be present for the colours (and the legend) to stay right as the settings change.
    """
    missing = [name for name in CUT_COLORS if name not in filters]
    return pd.DataFrame(
        {
            "token": labels + [labels[0]] * len(missing),
            "probability": probs + [0.0] * len(missing),
            "filter": filters + missing,
        }
    )


def inspect(
    prompt: str, state: dict[str, Any] | None = None, position: int = 0, adapter: str | None = None, **sampling: Any
):
    """The next-token distribution at a position: model (T=1) vs after the sampling settings."""
    params = to_params(sampling)
    adapter = selected_adapter(adapter)
    ids, where = _context(prompt, state or {}, position, adapter)
    view = generation.inspect_next_token(models.get_handle(), ids, params, adapter=adapter, top_n=15)
    # Zero-padded ranks: the chart orders its x axis alphabetically, which is then rank order.
    labels = [f"{rank + 1:02d}. {show_token(row.token)}" for rank, row in enumerate(view.rows)]
    raw = _with_every_filter(labels, [row.raw_prob for row in view.rows], [row.cut_by or "kept" for row in view.rows])
    final = _with_every_filter(labels, [row.final_prob for row in view.rows], ["kept"] * len(labels))
    table = pd.DataFrame(
        [
            [rank + 1, show_token(r.token), r.id, round(r.raw_prob, 4), round(r.final_prob, 4), r.cut_by or "—"]
            for rank, r in enumerate(view.rows)
        ],
        columns=["rank", "token", "id", "P (model, T=1)", "P (your settings)", "cut by"],
    )
    summary = f"{where}\n\n{view.summary()}"
    return raw, final, summary, table


def compare(prompt: str, adapter: str | None = None, **settings: Any) -> Iterator[tuple[Any, ...]]:
    """Two sampling configurations (a_*, b_*) on the same prompt, generated together in one batch; when both
    are done, the comparison's replay capsule too (for *Save capsule*)."""
    params_a, params_b = to_params(settings, "a_"), to_params(settings, "b_")
    adapter = selected_adapter(adapter)
    if not prompt or not prompt.strip():
        raise UserError("The prompt is empty: type some text or pick a preset.")
    throttle = Throttle(UI_UPDATE_SECONDS)
    handle = models.get_handle()
    for rows in generation.stream_batch(handle, [prompt, prompt], [params_a, params_b], adapter=adapter):
        done = all(r.done for r in rows)
        if throttle.due(final=done, rows=rows):
            capsule = record.comparison(handle, prompt, rows, adapter=adapter) if done else gr.skip()
            yield rows[0].text, _stats(rows[0]), rows[1].text, _stats(rows[1]), capsule


def load_preset(label: str) -> list[Any]:
    if not label:
        return [gr.update()] * 9
    text, settings = prompts.render_preset(label)
    return [text, *SamplingControls.updates_for(settings)]


def measure_shots(task: str | None, adapter: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Zero-, one- and few-shot accuracy of a labelled task, side by side, and every answer."""
    if not task:
        raise UserError("Choose a task to measure.")
    return _accuracy_tables(icl_eval.measure(models.get_handle(), task, adapter=selected_adapter(adapter)))


def measure_wordings(task: str | None, adapter: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Zero-shot accuracy of each wording of the task's instruction, side by side, and every answer."""
    if not task:
        raise UserError("Choose a task to measure.")
    return _accuracy_tables(icl_eval.measure_wordings(models.get_handle(), task, adapter=selected_adapter(adapter)))


def _accuracy_tables(report: icl_eval.ShotsReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = pd.DataFrame(
        [
            [
                shots,
                f"{100 * accuracy:.0f}%",
                f"{sum(i.correct for i in report.items if i.shots == shots)}/{sum(i.shots == shots for i in report.items)}",
                report.invalid[shots],
            ]
            for shots, accuracy in report.accuracy.items()
        ],
        columns=["prompt", "accuracy", "right", "answers that are no label"],
    )
    items = pd.DataFrame(
        [[i.shots, i.input, i.expected, i.answer or "(none)", "✓" if i.correct else "✗"] for i in report.items],
        columns=["prompt", "item", "label", "answer", ""],
    )
    return summary, items


def keep_generation(prompt: str, output: str, stats: str, state: Any, tree: Any, stored: Any) -> list:
    """The history with this generation (and its tree) newest; a branch grown from it replaces its entry."""
    if not isinstance(state, dict) or not state.get("tokens"):
        return history.entries(stored)
    data = history.bounded(
        {"prompt": prompt, "output": output, "stats": stats, "state": state, "tree": tree or {}}, shed=("tree",)
    )

    def same(old: dict[str, Any]) -> bool:  # the same generation: its prompt's tokens and first branch
        return data is not None and _root(old) == _root(data) and _root(data) != (None, None)

    return history.pushed(stored, prompt, data, replaces=same)


def _root(data: dict[str, Any]) -> tuple[Any, Any]:
    tree = history.part(data, "tree")
    return tree.get("prompt_ids"), ((tree.get("branches") or [{}])[0] or {}).get("tokens")


def restore_generation(data: dict[str, Any]) -> list[Any]:
    """A kept generation back on the page: prompt, text, stats, the token views' state and its tree."""
    state = data.get("state") if isinstance(data.get("state"), dict) else EMPTY_STATE
    tree = data.get("tree") if isinstance(data.get("tree"), dict) and data["tree"].get("branches") else None
    return [
        history.text(data.get("prompt")),
        history.text(data.get("output")),
        history.text(data.get("stats")),
        state,
        tree if tree is not None else branches.start(state)[0],
    ]


def position_update(state: dict[str, Any]) -> dict[str, Any]:
    n = len((state or {}).get("tokens") or [])
    return gr.update(maximum=max(n, 1), value=0, interactive=n > 0)


def build(demo: gr.Blocks, shared: Shared) -> dict[str, Any]:
    """Lay out the tab; sampling settings and adapter come from the shared sidebar. Returns what a
    lesson step may set here (the prompt)."""
    sampling = shared.sampling
    state = gr.State(EMPTY_STATE)
    with gr.Row():
        with gr.Column(scale=3):
            preset = gr.Dropdown(
                choices=prompts.preset_names(),
                value=None,
                label="Preset (in-context learning)",
                info="fills the prompt with a zero-, one- or few-shot template and suitable settings",
            )
            prompt = gr.Textbox(
                lines=8,
                label="Prompt",
                value="The three most important ideas in machine learning are",
                placeholder="Type text for the model to continue…",
            )
            with gr.Row():
                run = gr.Button("Generate", variant="primary")
                stop = gr.Button("Stop", elem_classes=["stop-quiet"], elem_id="gen-stop", scale=0, min_width=90)
            output = gr.Textbox(lines=8, label="Completion", interactive=False, buttons=["copy"], elem_id="gen-output")
            stats = gr.Markdown(elem_id="gen-stats")
            kept = history.build("generate")
            save_capsule, load_capsule, capsule_file, capsule_note = capsule_files.build()
        with gr.Column(scale=2):
            gr.Markdown("#### Next-token distribution")
            position = gr.Slider(
                0,
                1,
                value=0,
                step=1,
                label="Position in the generated text",
                info="0 = right after the prompt",
                interactive=False,
            )
            raw_plot = gr.BarPlot(
                x="token",
                y="probability",
                color="filter",
                color_map=CUT_COLORS,
                title=RAW_CHART_TITLE,
                x_label_angle=-45,
                height=260,
                tooltip="all",
            )
            final_plot = gr.BarPlot(
                x="token",
                y="probability",
                color="filter",
                color_map=CUT_COLORS,
                title=FINAL_CHART_TITLE,
                x_label_angle=-45,
                height=260,
                tooltip="all",
            )
            summary = gr.Markdown(elem_id="gen-inspect-summary")
            with gr.Accordion("Candidates as a table", open=False):
                candidates = gr.Dataframe(interactive=False, wrap=True)
    tree = gr.State({})
    with gr.Accordion("Per-token view", open=True):
        tokens_html = gr.HTML(token_view({})[0], js_on_load=branches.PICK_JS, elem_id="gen-tokens")  # not blank
        with gr.Accordion("Token tree: branch from any token", open=False, elem_id="tree-box") as tree_box:
            gr.Markdown(
                "<span class='muted'>Click a token above (or give its number), pick one of the model's alternatives "
                "there or type your own, and the text continues from that point as a new branch, with the sidebar's "
                "settings. Every branch is kept: pick one to show it (the views above and the distribution follow).</span>"
            )
            with gr.Row():
                branch_at = gr.Number(
                    label="Branch at token #", value=0, precision=0, minimum=0, elem_id="tree-at", scale=1
                )
                alternative = gr.Dropdown(label="Alternative", choices=[], elem_id="tree-alt", scale=2)
                typed = gr.Textbox(label="…or type", placeholder="text to force instead", elem_id="tree-typed", scale=2)
                grow_button = gr.Button("Continue from here", variant="primary", elem_id="tree-grow", scale=1)
            with gr.Row():
                branch_pick = gr.Dropdown(label="Branch", choices=[], elem_id="tree-branch", scale=4)
                export_button = gr.Button("Export tree (JSON)", scale=1)
            tree_view = gr.HTML(elem_id="token-tree")
            tree_file = gr.File(label="Token tree (JSON)", interactive=False, height=70)
        with gr.Accordion("Token table", open=False):
            tokens_table = gr.Dataframe(interactive=False, wrap=True)
    with gr.Accordion("Compare two settings side by side", open=False):
        gr.Markdown(
            "**A** uses the settings in the sidebar; set **B** here. Both run on the same prompt in one batched call."
        )
        with gr.Row():
            with gr.Column(scale=1):
                sampling_b = sampling_controls(SamplingParams(temperature=1.2, top_p=1.0), label_prefix="B · ")
            with gr.Column(scale=2):
                compare_run = gr.Button("Compare", variant="primary")
                with gr.Row():
                    with gr.Column():
                        text_a = gr.Textbox(lines=8, label="A (sidebar settings)", interactive=False)
                        stats_a = gr.Markdown()
                    with gr.Column():
                        text_b = gr.Textbox(lines=8, label="B", interactive=False)
                        stats_b = gr.Markdown()
                save_pair, load_pair, pair_file, pair_note = capsule_files.build("compare-capsule")
    with gr.Accordion("In-context learning, measured: examples and wordings", open=False):
        gr.Markdown(
            "<span class='muted'>Each labelled item of the task is asked with no example, one, and three "
            "(Measure), or zero-shot under each wording of the instruction (Compare wordings); greedy, one batch; "
            "the model's first word is compared with the label.</span>"
        )
        with gr.Row():
            icl_task = gr.Dropdown(
                icl_eval.measurable_tasks(), value=icl_eval.measurable_tasks()[0], label="Task", scale=3
            )
            icl_run = gr.Button("Measure", variant="primary", scale=1)
            wordings_run = gr.Button("Compare wordings", scale=1)
        icl_summary = gr.Dataframe(interactive=False, label="Accuracy by prompt style")
        with gr.Accordion("Every answer", open=False):
            icl_items = gr.Dataframe(interactive=False, wrap=True, max_height=320)
    how_it_works("generate")
    icl_run.click(measure_shots, [icl_task, shared.adapter], [icl_summary, icl_items], api_name="measure_shots")
    wordings_run.click(
        measure_wordings, [icl_task, shared.adapter], [icl_summary, icl_items], api_name="measure_wordings"
    )

    inspect_event: dict[str, Any] = {
        "fn": inspect,
        "inputs": [prompt, state, position, shared.adapter],
        "inputs_kwargs": sampling.kwargs(),
        "outputs": [raw_plot, final_plot, summary, candidates],
    }
    views = [tokens_html, tokens_table]

    gr.on(
        # .input as well as .release: a position typed into the slider's box refreshes the view too
        [position.release, position.input, *(c.release for c in sampling.filters), prompt.blur, shared.adapter.change],
        **inspect_event,
        api_name="inspect",
        trigger_mode="always_last",
        **MODEL_EVENTS,
    )
    # on page load the distribution is drawn once the kept generation (if any) is back: see history.reopen below
    fill_when_model_ready(demo, lambda: engine_knob_updates(models.get_handle()), None, sampling_b.engine_knobs)
    preset.change(load_preset, preset, [prompt, *sampling.inputs], api_name="preset").then(
        **inspect_event, api_visibility="private"
    )
    started, run_id = stoppable([run.click], stop)
    generating = started.success(
        run_generation,
        [prompt, shared.adapter, run_id],
        [output, stats, state],
        inputs_kwargs=sampling.kwargs(),
        api_name="generate",
        **MODEL_EVENTS,
    )
    # finished or stopped (the stream ends itself on Stop), the token views follow
    # .success: after a failed generation the follow-ups would fail again with the same reason ("Error (2)")
    # (the tree first: the history keeps it, and a reload right after must not find it missing)
    finished = generating.success(token_view, state, views, api_visibility="private").then(
        branches.start, state, [tree, tree_view, branch_pick], api_visibility="private"
    )
    finished.then(position_update, state, position, api_visibility="private").then(
        **inspect_event, api_visibility="private"
    )
    tokens_html.click(branches.pick_token, state, [branch_at, alternative, position], api_visibility="private").then(
        lambda: gr.update(open=True), None, tree_box, api_visibility="private"
    ).then(**inspect_event, api_visibility="private")
    branched = grow_button.click(
        branches.grow,
        [tree, branch_pick, branch_at, alternative, typed],
        [output, state, tree, tree_view, branch_pick],
        inputs_kwargs=sampling.kwargs(),
        api_name="token_tree_grow",
        **MODEL_EVENTS,
    )
    shown = branch_pick.input(
        branches.show, [tree, branch_pick], [output, state, tree, tree_view], api_visibility="private"
    )
    for event in (branched, shown):  # the views, the position and the distribution follow the branch shown
        event.success(token_view, state, views, api_visibility="private").then(
            position_update, state, position, api_visibility="private"
        ).then(**inspect_event, api_visibility="private")
    export_button.click(branches.export, tree, tree_file, api_name="token_tree_export")
    save_capsule.click(capsule_files.save_generation, state, capsule_file, api_name="save_capsule")
    load_capsule.upload(
        capsule_files.load_generation,
        load_capsule,
        [prompt, *sampling.inputs, shared.adapter, capsule_note],
        api_name="load_capsule",
    ).success(**inspect_event, api_visibility="private")
    # every generation, and every branch grown from it, is kept in the browser; a reload brings it back
    work = [prompt, output, stats, state, tree]
    history.remember(kept, finished, keep_generation, work)
    for event in (branched, shown):
        history.remember(kept, event, keep_generation, work)
    for event in history.reopen(demo, kept, restore_generation, work):
        event.then(token_view, state, views, **history.QUIET).then(
            position_update, state, position, **history.QUIET
        ).then(branches.redraw, tree, [tree_view, branch_pick], **history.QUIET).then(**inspect_event, **history.QUIET)
    compared = gr.State(None)  # the last finished comparison's replay capsule
    compare_run.click(
        compare,
        [prompt, shared.adapter],
        [text_a, stats_a, text_b, stats_b, compared],
        inputs_kwargs={**sampling.kwargs("a_"), **sampling_b.kwargs("b_")},
        api_name="compare",
        **MODEL_EVENTS,
    )
    save_pair.click(
        lambda document: capsule_files.saved(document, "comparison"),
        compared,
        pair_file,
        api_name="save_comparison_capsule",
    )
    load_pair.upload(
        capsule_files.load_comparison,
        load_pair,
        [prompt, *sampling.inputs, *sampling_b.inputs, shared.adapter, pair_note],
        api_name="load_comparison_capsule",
    )
    return {"prompt": prompt}
