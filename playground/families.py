"""Inside the model › Model families: what encoders (BERT) and encoder-decoders (T5) are trained to
do, shown on your text beside the app's decoder (pipelines/inside/encoders.py)."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from pipelines.engine import models
from pipelines.inside import encoders

from .spec_controls import build_spec, controls

BECAME = {"mask": "→ [MASK] (80%)", "random": "→ a random token (10%)", "kept": "→ kept as it is (10%)"}


def _spec(values: dict[str, Any]) -> encoders.MaskingSpec:
    return build_spec(encoders.MaskingSpec, values)


def masking(text: str, **values: Any) -> tuple[str, str]:
    """BERT's masking of the text: the chosen tokens and what each became, and the recipe measured."""
    tokenizer, _ = encoders.encoder()
    report = encoders.mlm_masking(tokenizer, text, _spec(values))
    spans = []
    for token in report["tokens"]:
        piece = html.escape(token["piece"])
        if token["became"] is None:
            kind = "special" if token["special"] else "c0"
            spans.append(f"<span class='tok {kind}'>{piece}</span>")
        else:
            shown = html.escape(token["shown"])
            spans.append(
                f"<span class='tok chosen {token['became']}' title='{piece} {BECAME[token['became']]}'>"
                f"{piece}<sub>{shown}</sub></span>"
            )
    measured = report["measured"]
    note = (
        f"Chosen tokens are outlined; the small text is what the model reads there. Over "
        f"{measured['draws']:,} draws of this text: **{measured['chosen_share']:.1%} chosen**, and of those "
        f"**{measured['mask_share']:.0%} [MASK]**, **{measured['random_share']:.0%} random**, "
        f"**{measured['kept_share']:.0%} kept** — BERT's recipe, as transformers' "
        "`DataCollatorForLanguageModeling` applies it. The model must predict every chosen token, from both sides."
    )
    return "<div class='tok-row'>" + "".join(spans) + "</div>", note


def corrupt(text: str, **values: Any) -> str:
    """T5's span corruption of the text: the input with sentinels, the target with the spans."""
    tokenizer, _ = encoders.encoder()
    report = encoders.span_corruption(tokenizer, text, _spec(values))
    return (
        f"**Input** (the encoder reads): `{html.escape(' '.join(report['input']))}`\n\n"
        f"**Target** (the decoder writes): `{html.escape(' '.join(report['target']))}`\n\n"
        f"{report['corrupted']} of {len(report['tokens'])} tokens corrupted in {report['spans']} span(s); each "
        "sentinel stands for a whole span, so the target is short — T5's pre-training objective."
    )


def both_ways(text: str) -> tuple[str, str, str]:
    """The same sentence's attention in the encoder (bidirectional) and the app's decoder (causal)."""
    from .inside import attention_html

    report = encoders.attention_both_ways(models.get_handle(), text)
    views = []
    for side, causal in (("encoder", False), ("decoder", True)):
        found = report[side]
        table = {"tokens": [{"piece": p} for p in found["tokens"]], "weights": found["weights"]}
        views.append(attention_html(table, causal=causal))
    note = (
        f"Last layer, mean over heads. **Encoder** ({report['encoder']['model']}): "
        f"{report['encoder']['to_the_right']:.0%} of the attention goes to tokens on the right — every token sees "
        f"the whole sentence. **Decoder** ({html.escape(str(report['decoder']['model']))}): "
        f"{report['decoder']['to_the_right']:.0%} — the causal mask hides the future, which is what lets it generate."
    )
    return views[0], views[1], note


def order(first: str, second: str) -> str:
    """ALBERT's sentence-order task on two sentences, and which order the decoder finds likelier."""
    report = encoders.sentence_order(models.get_handle(), first, second)
    right, swapped = report["in_order"], report["swapped"]
    return (
        f"- **Positive** (in order): log p = {right['log_likelihood']:.2f}\n"
        f"- **Negative** (swapped): log p = {swapped['log_likelihood']:.2f}\n\n"
        f"The decoder finds the text **{report['model_prefers']}** likelier, by a factor of "
        f"e^{abs(report['log_ratio']):.2f}. ALBERT's sentence-order prediction trains an encoder to tell these "
        "two apart (BERT's next-sentence prediction paired a sentence with a random one instead, which topic alone "
        "gives away)."
    )


def build() -> None:
    """The panel (inside a tab of Inside the model); the decoder side uses the loaded model."""
    gr.Markdown(
        "The app serves a **decoder** (GPT-style: predicts the next token, attends only to the left). "
        "**Encoders** (BERT) read the whole text at once and are trained to fill in masked tokens; "
        "**encoder-decoders** (T5) read a corrupted text and write what was removed. Here, on your text: "
        "the encoder is all-MiniLM-L6-v2 (a 6-layer BERT, the RAG tab's embedder)."
    )
    text = gr.Textbox(
        label="Text",
        lines=2,
        value="Thank you for inviting me to your party last week, it was great fun.",
        elem_id="families-text",
    )
    settings = controls(encoders.MaskingSpec, ["probability", "mean_span", "seed"])
    with gr.Row():
        mask_button = gr.Button("BERT: mask it", variant="primary")
        span_button = gr.Button("T5: corrupt spans")
        attention_button = gr.Button("Attention: encoder vs decoder")
    masked = gr.HTML(elem_id="families-masked")
    masked_note = gr.Markdown()
    spans = gr.Markdown(elem_id="families-spans")
    with gr.Row():
        encoder_view = gr.HTML(label="Encoder", elem_id="families-encoder")
        decoder_view = gr.HTML(label="Decoder", elem_id="families-decoder")
    attention_note = gr.Markdown(elem_id="families-attention-note")
    gr.Markdown("#### Sentence order (ALBERT)")
    with gr.Row():
        first = gr.Textbox(label="First sentence", value="She put the kettle on.", scale=2)
        second = gr.Textbox(label="Second sentence", value="Then she poured the tea.", scale=2)
        order_button = gr.Button("Compare the orders", scale=1)
    ordered = gr.Markdown(elem_id="families-order")
    mask_inputs = {"probability": settings["probability"], "seed": settings["seed"]}
    mask_button.click(masking, text, [masked, masked_note], inputs_kwargs=mask_inputs, api_name="inside_masking")
    span_button.click(corrupt, text, spans, inputs_kwargs=settings, api_name="inside_span_corruption")
    attention_button.click(
        both_ways, text, [encoder_view, decoder_view, attention_note], api_name="inside_attention_both"
    )
    order_button.click(order, [first, second], ordered, api_name="inside_sentence_order")
