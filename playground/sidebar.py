"""The sidebar every tab shares: which model is loaded, and the sampling panel."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pipelines.models import ModelHandle

from .controls import SamplingControls, sampling_controls


@dataclass
class Shared:
    """Components that several tabs read."""

    sampling: SamplingControls


def model_card(handle: ModelHandle) -> str:
    params = sum(p.numel() for p in handle.model.parameters())
    return (
        f"**{handle.name}** · {params / 1e6:.0f}M parameters · context {handle.context_window:,} tokens  \n"
        f"{handle.plan.device} · {handle.plan.dtype_name} · {handle.plan.threads} threads  \n"
        f"<span class='muted'>{handle.plan.reason}</span>"
    )


def build(handle: ModelHandle) -> Shared:
    with gr.Sidebar(label="Model & sampling", open=True, width=330):
        gr.Markdown(model_card(handle))
        with gr.Accordion("Sampling (shared by every tab)", open=True):
            sampling = sampling_controls()
    return Shared(sampling=sampling)
