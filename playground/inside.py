"""Inside the model: tokens, the likelihood of a text, attention, the logit lens, the architecture.

Each panel is one call into `pipelines.inside` on the loaded model (with the sidebar's adapter);
this module only draws what comes back, as HTML the browser renders without a plotting library.
"""

from __future__ import annotations

import html
import math
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import inside
from pipelines.engine import models
from pipelines.inside import bias, steering, tuned_lens

from . import causal, families, history
from . import compression as compression_panel
from . import scale as scale_panel
from .controls import fill_when_model_ready, how_it_works
from .sidebar import Shared, selected_adapter
from .spec_controls import control

PALETTE = 6  # token colours, cycled (assets/style.css: .tok.c0 … .tok.c5)
SHOWN_PIECE = 10  # characters of a token shown in a grid cell (the whole one in its tooltip)


# byte-level BPE writes a space, a newline and a tab as these letters; the app shows them as it does everywhere
BPE_MARKS = str.maketrans({"Ġ": "␣", "Ċ": "⏎", "ĉ": "⇥"})


def _piece(token: dict[str, Any]) -> str:
    return html.escape(token["piece"].translate(BPE_MARKS))


def tokens_html(report: dict[str, Any]) -> str:
    spans = []
    for index, token in enumerate(report["tokens"]):
        kind = "special" if token["special"] else f"c{index % PALETTE}"
        spans.append(
            f"<span class='tok {kind}' title='id {token['id']} · decodes to {html.escape(repr(token['text']))}'>"
            f"{_piece(token)}<sub>{token['id']}</sub></span>"
        )
    return "<div class='tok-row'>" + "".join(spans) + "</div>"


def tokenize(text: str, as_chat: bool) -> tuple[str, str]:
    report = inside.tokens(models.get_handle().tokenizer, text, as_chat=as_chat)
    ratio = report["characters_per_token"]
    summary = (
        f"**{report['characters']}** characters → **{report['count']}** tokens"
        + (f" ({ratio:.1f} characters per token)" if ratio else "")
        + ". ␣ is a space and ⏎ a newline, as everywhere in the app (the tokenizer itself writes them `Ġ` and `Ċ`)"
        + ("; the chat template's special tokens are grey." if as_chat else ".")
    )
    return tokens_html(report), summary


def _shade(surprisal: float) -> str:
    """Background for a token's surprisal: white when expected, deep red from 10 nats up."""
    alpha = min(max(surprisal, 0.0) / 10.0, 1.0)
    return f"background: rgba(220, 38, 38, {alpha:.2f})"


def surprisal_html(report: dict[str, Any]) -> str:
    spans = []
    for token in report["tokens"]:
        text = html.escape(token["text"]).replace("\n", "↵<br>")
        if token["logprob"] is None:
            spans.append(f"<span class='surp first' title='the first token is never predicted'>{text}</span>")
            continue
        surprisal = -token["logprob"]
        spans.append(
            f"<span class='surp' style='{_shade(surprisal)}' title='−log p = {surprisal:.2f} · "
            f"p = {math.exp(token['logprob']):.3g} · rank {token['rank']}'>{text}</span>"
        )
    return "<div class='surp-text'>" + "".join(spans) + "</div>"


def score_text(text: str, adapter: str | None) -> tuple[str, str]:
    report = inside.perplexity(models.get_handle(), text, adapter=selected_adapter(adapter))
    summary = (
        f"Log-likelihood **{report['total_logprob']:.2f}** over {report['scored_tokens']} predicted tokens · "
        f"mean loss **{report['mean_loss']:.3f}** nats · perplexity **{report['perplexity']:.2f}** = exp(mean loss). "
        "Hover a token for its −log p and rank; darker = more surprising."
    )
    return surprisal_html(report), summary


def probe_bias(text: str, adapter: str | None) -> tuple[str, pd.DataFrame]:
    """The bias probe: mean log-probability difference (a - b) with its 95% interval, overall and per group."""
    report = bias.probe(models.get_handle(), text, adapter=selected_adapter(adapter))
    first = report["pairs"][0]

    def line(name: str, found: dict[str, float]) -> str:
        sign = "excludes 0" if found["ci_low"] > 0 or found["ci_high"] < 0 else "includes 0"
        return (
            f"- **{html.escape(name)}** ({found['n']:.0f}): mean log p(a) − log p(b) = **{found['mean_delta']:+.2f}** "
            f"nats, 95% interval [{found['ci_low']:+.2f}, {found['ci_high']:+.2f}] ({sign}); a likelier in "
            f"{found['prefers_a']:.0%} of the sentences"
        )

    lines = [line("all sentences", report), *(line(name, found) for name, found in report["groups"].items())]
    summary = (
        f"a = *{html.escape(first['a'])}*, b = *{html.escape(first['b'])}* (first line). Positive: the model finds "
        "a likelier. The interval is a bootstrap over these sentences: it speaks about them, not about the model "
        "at large.\n\n" + "\n".join(lines)
    )
    table = pd.DataFrame(
        [[p["group"], p["text_a"], p["b"], round(p["delta"], 2)] for p in report["pairs"]],
        columns=["group", "sentence (a)", "b", "log p(a) − log p(b)"],
    )
    return summary, table


def score_continuations(prompt: str, first: str, second: str, adapter: str | None) -> str:
    handle, chosen = models.get_handle(), selected_adapter(adapter)
    rows = [inside.score(handle, prompt, first, adapter=chosen)]
    if second:
        rows.append(inside.score(handle, prompt, second, adapter=chosen))
    lines = ["| continuation | tokens | log P | P | rank of its first token |", "|---|---|---|---|---|"]
    for text, row in zip([first, second], rows, strict=False):
        pieces = " ".join(f"`{html.escape(t['piece'])}`" for t in row["tokens"])
        lines.append(
            f"| {html.escape(repr(text), quote=False)} | {pieces} | {row['logprob']:.3f} | {row['prob']:.3g} | {row['rank']} |"
        )
    top = rows[0]["top_next"]
    text = (
        "\n".join(lines)
        + f"\n\nThe model's own top next token after the prompt: `{html.escape(top['piece'])}` (p = {top['prob']:.3g})."
    )
    if len(rows) == 2:
        ratio = math.exp(rows[0]["logprob"] - rows[1]["logprob"])
        text += f" The first continuation is **{ratio:.3g}×** as likely as the second."
    return text


def attention_html(report: dict[str, Any], *, causal: bool = True) -> str:
    """Query x key weights as a heatmap; a causal model's cells above the diagonal are hatched."""
    pieces = [html.escape(t["piece"][:SHOWN_PIECE]) for t in report["tokens"]]
    head = "".join(f"<th class='key'><span>{p}</span></th>" for p in pieces)
    rows = []
    for i, (piece, weights) in enumerate(zip(pieces, report["weights"], strict=False)):
        cells = []
        for j, w in enumerate(weights):
            if causal and j > i:
                cells.append("<td class='masked' title='masked: a token never sees later tokens'></td>")
            else:
                cells.append(
                    f"<td style='background: rgba(234, 88, 12, {min(1.0, w**0.5):.2f})' "
                    f"title='{pieces[i]} → {pieces[j]}: {w:.3f}'></td>"
                )
        rows.append(f"<tr><th class='query'>{piece}</th>{''.join(cells)}</tr>")
    return f"<table class='heatmap'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def show_attention(prompt: str, layer: float, head: float, mean: bool, adapter: str | None) -> tuple[str, str]:
    report = inside.attention(
        models.get_handle(),
        prompt,
        layer=int(layer),
        head=None if mean else int(head),
        adapter=selected_adapter(adapter),
    )
    which = "the mean over heads" if report["head"] is None else f"head {report['head']}"
    return attention_html(report), (
        f"Layer {report['layer']}, {which}: row = the query token, column = the key token it attends to "
        "(hover a cell for its weight; each row sums to 1; hatched = masked by causality)."
    )


def lens_html(report: dict[str, Any], title: str = "input →") -> str:
    inputs = "".join(f"<th class='key'><span>{_piece(t)[:SHOWN_PIECE]}</span></th>" for t in report["tokens"])
    final = [cell["id"] for cell in report["final"]]
    rows = []
    for number, (layer, final_probs) in enumerate(zip(report["layers"], report["final_prob"], strict=False)):
        cells = []
        for position, cell in enumerate(layer):
            mark = " final" if cell["id"] == final[position] else ""
            cells.append(
                f"<td class='lens{mark}' style='background: rgba(37, 99, 235, {0.08 + 0.6 * cell['prob']:.2f})' "
                f"title='layer {number}: {html.escape(cell['token'])} p = {cell['prob']:.3f}; "
                f"p(final prediction) = {final_probs[position]:.3f}'>{html.escape(cell['token'][:SHOWN_PIECE])}</td>"
            )
        rows.append(f"<tr><th class='query'>layer {number}</th>{''.join(cells)}</tr>")
    return f"<table class='heatmap lens-grid'><tr><th>{title}</th>{inputs}</tr>{''.join(rows)}</table>"


def _forms_at(view: dict[str, Any]) -> int | None:
    return next((n for n, row in enumerate(view["final_prob"]) if row[-1] >= 0.5), None)


def show_lens(prompt: str, tuned: bool, adapter: str | None) -> tuple[str, str, pd.DataFrame]:
    handle = models.get_handle()
    translators = tuned_lens.bundled_for(handle) if tuned else None
    report = inside.lens(handle, prompt, adapter=selected_adapter(adapter), translators=translators)
    rises = _forms_at(report)
    note = (
        f"The model's prediction after the last token is `{html.escape(report['final'][-1]['token'].translate(BPE_MARKS))}`; "
        + (f"it reaches p ≥ 0.5 at layer {rises}" if rises is not None else "no layer gives it p ≥ 0.5")
        + " through the logit lens. Each cell: the top next token if the model stopped after that layer (blue = its "
        "probability; outlined = the same as the final prediction). The plot: each layer's KL divergence from the "
        "final distribution, mean over the prompt's positions (0 at the last layer)."
    )
    curves = [{"layer": n, "KL (nats)": v, "lens": "logit lens"} for n, v in enumerate(report["kl"])]
    grids = lens_html(report, "logit lens")
    if "tuned" in report:
        tuned_view = {**report["tuned"], "tokens": report["tokens"], "final": report["final"]}
        grids += "<br>" + lens_html(tuned_view, "tuned lens")
        tuned_rises = _forms_at(tuned_view)
        note += (
            " The tuned lens (below the logit lens) reads each layer through a small translator fitted to predict the "
            "final distribution: "
            + (f"through it the prediction reaches p ≥ 0.5 at layer {tuned_rises}." if tuned_rises is not None else "")
        )
        curves += [{"layer": n, "KL (nats)": v, "lens": "tuned lens"} for n, v in enumerate(report["tuned"]["kl"])]
    return grids, note, pd.DataFrame(curves)


def _tree_lines(node: dict[str, Any], depth: int = 0) -> list[str]:
    weights = ", ".join(
        f"{w['name']} {'×'.join(str(d) for d in w['shape'])}" + (" (tied)" if w["tied"] else "")
        for w in node["weights"]
    )
    repeat = f" **× {node['repeat']}**" if node.get("repeat") else ""
    name = f"`{node['name']}` " if node["name"] != node["type"] else ""
    line = f"{'    ' * depth}- {name}{node['type']}{repeat} — {node['params']:,} parameters"
    if node.get("repeat"):
        line += " each"
    lines = [line + (f" ({weights})" if weights else "")]
    for child in node["children"]:
        lines += _tree_lines(child, depth + 1)
    return lines


def show_architecture(context: float) -> tuple[str, pd.DataFrame, str]:
    report = inside.architecture(models.get_handle(), context=int(context) if context else None)
    kv = report["kv_cache"]
    parts = pd.DataFrame(
        [[name, part["params"], f"{part['share']:.1%}"] for name, part in report["parts"].items()],
        columns=["part", "parameters", "share"],
    )
    cache = (
        f"**{report['total_params']:,}** parameters"
        + (" (the output head is the embedding matrix, counted once)" if report["tied_head"] else "")
        + f".  \n**KV cache**: 2 × {kv['layers']} layers × {kv['kv_heads']} key-value heads × {kv['head_dim']} × "
        f"{kv['dtype_bytes']} bytes = **{kv['bytes_per_token']:,} bytes per token**; with one key-value head per "
        f"query head ({kv['heads']}) it would be {kv['bytes_per_token_without_gqa']:,} — grouped-query attention saves "
        f"{kv['gqa_saving']:.0f}×. For {kv['context']:,} tokens: **{kv['bytes_for_context'] / 2**20:,.1f} MiB** per sequence."
    )
    return "\n".join(_tree_lines(report["tree"])), parts, cache


def _sizes() -> tuple[Any, Any, Any]:
    found = inside.shape(models.wait_for_handle() or models.get_handle())
    return (
        gr.update(maximum=found["layers"] - 1, value=min(found["layers"] - 1, 3), interactive=True),
        gr.update(maximum=found["heads"] - 1, value=0, interactive=True),
        gr.update(maximum=found["layers"] - 1, value=min(found["layers"] - 1, steering.SteerSpec().layer)),
    )


def build(demo: gr.Blocks, shared: Shared) -> dict[str, Any]:
    gr.Markdown(
        "What happens inside the model, live on the loaded weights (and the sidebar's adapter): its tokens, how "
        "likely it finds a text, where each token attends, what each layer would predict, and its parts."
    )
    with gr.Tabs() as sections:
        with gr.Tab("Tokenizer", id="tokenizer"):
            with gr.Row():
                text = gr.Textbox(
                    label="Text", lines=2, value="LLMs are cool, and unfriendly tokens split into pieces.", scale=4
                )
                with gr.Column(scale=1):
                    as_chat = gr.Checkbox(label="as chat (the chat template's tokens)")
                    tokenize_button = gr.Button("Tokenize", variant="primary")
            token_view = gr.HTML(elem_id="inside-tokens")
            token_summary = gr.Markdown()
        with gr.Tab("Likelihood", id="likelihood"):
            with gr.Row():
                scored = gr.Textbox(
                    label="Any text", lines=3, value="The capital of France is Paris. It is a large city.", scale=4
                )
                score_button = gr.Button("Score the text", variant="primary", scale=1)
            surprisal = gr.HTML(elem_id="inside-surprisal")
            likelihood = gr.Markdown()
            gr.Markdown("#### Score a continuation")
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", value="LLMs are", scale=2)
                first = gr.Textbox(label="Continuation", value=" cool", scale=1)
                second = gr.Textbox(label="Compared with (optional)", value=" boring", scale=1)
                compare_button = gr.Button("Score", scale=1)
            continuations = gr.Markdown(elem_id="inside-continuations")
            gr.Markdown(
                "#### Bias probe: one word swapped\nEach line is scored twice, once with each side of its `{a|b}`; "
                "`# group` at the end of a line groups lines. The default compares *he* and *she* after occupations."
            )
            with gr.Row():
                templates = gr.Textbox(
                    label="Sentences",
                    value=bias.default_templates(),
                    lines=6,
                    max_lines=12,
                    scale=4,
                    elem_id="inside-bias-text",
                )
                bias_button = gr.Button("Probe", scale=1)
            bias_summary = gr.Markdown(elem_id="inside-bias")
            bias_table = gr.Dataframe(label="Per sentence", interactive=False, wrap=True)
        with gr.Tab("Attention", id="attention"):
            with gr.Row():
                attn_prompt = gr.Textbox(
                    label="Prompt", value="The cat sat on the mat because it was tired.", lines=2, scale=3
                )
                with gr.Column(scale=2):
                    # the model's own sizes narrow the sliders once it is loaded (_sizes)
                    layer = control(inside.AttentionSpec, "layer", elem_id="inside-layer")
                    head = control(inside.AttentionSpec, "head", elem_id="inside-head")
                    mean = control(inside.AttentionSpec, "mean")
                    attention_button = gr.Button("Show attention", variant="primary")
            attention = gr.HTML(elem_id="inside-attention")
            attention_note = gr.Markdown()
        with gr.Tab("Logit lens", id="lens"):
            with gr.Row():
                lens_prompt = gr.Textbox(label="Prompt", value="The capital of France is", scale=4)
                tuned = gr.Checkbox(label="tuned lens beside it (translators fitted for the bundled model)", scale=1)
                lens_button = gr.Button("Run the lens", variant="primary", scale=1)
            lens_note = gr.Markdown(elem_id="inside-lens-note")
            lens_kl = gr.LinePlot(
                x="layer", y="KL (nats)", color="lens", label="KL to the final distribution", height=240
            )
            lens = gr.HTML(elem_id="inside-lens")
        with gr.Tab("Heads", id="heads"):
            typed = causal.build_heads(shared)  # which heads do a known job: induction, previous token, sink
        with gr.Tab("Patching", id="patching"):
            typed |= causal.build_patching(shared)  # which layer and position carries a fact, by cause
        with gr.Tab("Steering", id="steering"):
            steer_layer, steer_inputs = causal.build_steering(shared)  # a direction added to the stream while it writes
        with gr.Tab("Architecture", id="architecture"):
            with gr.Row():
                context = control(inside.ArchitectureSpec, "context")
                architecture_button = gr.Button("Show", scale=0)
            cache = gr.Markdown(elem_id="inside-kv")
            with gr.Row():
                tree = gr.Markdown(elem_id="inside-tree")
                parts = gr.Dataframe(label="Parameters per part", interactive=False)
        with gr.Tab("Model families", id="families"):
            families.build()  # encoders and encoder-decoders beside the app's decoder
        with gr.Tab("Scale & cost", id="scale"):
            scale_panel.build()  # arithmetic on model sizes: needs no loaded model
        with gr.Tab("Compression", id="compression"):
            compression_panel.build(demo)  # quantized and pruned copies of the model, measured live
    how_it_works("inside")
    adapter = shared.adapter
    gr.on(
        [tokenize_button.click, text.submit],
        tokenize,
        [text, as_chat],
        [token_view, token_summary],
        api_name="inside_tokens",
    )
    gr.on([score_button.click], score_text, [scored, adapter], [surprisal, likelihood], api_name="inside_perplexity")
    gr.on(
        [compare_button.click],
        score_continuations,
        [prompt, first, second, adapter],
        continuations,
        api_name="inside_score",
    )
    gr.on(
        [attention_button.click, layer.release, head.release, mean.change],
        show_attention,
        [attn_prompt, layer, head, mean, adapter],
        [attention, attention_note],
        api_name="inside_attention",
    )
    gr.on(
        [lens_button.click, lens_prompt.submit],
        show_lens,
        [lens_prompt, tuned, adapter],
        [lens, lens_note, lens_kl],
        api_name="inside_lens",
    )
    gr.on([bias_button.click], probe_bias, [templates, adapter], [bias_summary, bias_table], api_name="inside_bias")
    gr.on([architecture_button.click], show_architecture, context, [tree, parts, cache], api_name="inside_architecture")
    fill_when_model_ready(demo, _sizes, None, [layer, head, steer_layer])
    typed |= steer_inputs | {
        "text": text,
        "scored": scored,
        "prompt": prompt,
        "first": first,
        "second": second,
        "templates": templates,
        "attn_prompt": attn_prompt,
        "lens_prompt": lens_prompt,
    }
    history.keep_inputs(demo, "inside", typed)  # a reload leaves every panel's prompts as they were typed
    return {"inside_tab": sections, "inside_text": text}  # what a lesson step may set here
