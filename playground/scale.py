"""Inside the model › Scale & cost: what a model of a given size costs to train and needs in memory
(pipelines/train/scale.py), every figure beside the formula that made it."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from pipelines import knobs
from pipelines.train import scale

from .spec_controls import bind, build_spec, controls

SETTINGS = (
    "tokens",
    "gpu",
    "gpus",
    "utilisation",
    "grid_kg_per_kwh",
    "pue",
    "batch",
    "length",
    "checkpointing",
    "lora_r",
)


def calculate(**values: Any) -> tuple[str, pd.DataFrame]:
    """The summary (compute, time, energy, carbon, with formulas) and the memory table."""
    report = scale.calculate(build_spec(scale.ScaleSpec, values))
    model, gpu, memory, formulas = report["model"], report["gpu"], report["memory_gb"], report["formulas"]
    summary = (
        f"**{model['params']:,.0f} parameters** — {model['described']}: {model['layers']} layers, hidden "
        f"{model['hidden']:,}, MLP {model['intermediate']:,}, {model['heads']} heads ({model['kv_heads']} key-value), "
        f"vocabulary {model['vocab']:,}.\n\n"
        f"- **Chinchilla-optimal data**: {report['chinchilla_tokens']:.3g} tokens — {formulas['chinchilla_tokens']}. "
        f"This run: {report['tokens']:.3g} tokens, **{report['tokens_per_param']:.0f} per parameter**.\n"
        f"- **Training compute**: {report['train_flops']:.3g} FLOPs — {formulas['train_flops']}.\n"
        f"- **Time**: {report['gpu_hours']:,.0f} {gpu['name']} GPU-hours — {formulas['gpu_hours']} "
        f"({gpu['tflops']:g} TFLOP/s peak) — **{report['days']:,.1f} days** on {gpu['count']:,} GPUs.\n"
        f"- **Energy and carbon**: {report['energy_kwh']:,.0f} kWh, **{report['tco2']:,.2f} tCO₂e** — "
        f"{formulas['tco2']} ({gpu['watts']:g} W). The Llama 2 paper reports 184,320 A100-hours and 31.22 tCO₂e "
        f"for 7B on 2T tokens: choose 7B, 2e12 tokens and the defaults to compare."
    )
    rows: list[list[Any]] = [
        [f"inference weights, {name}", value, formulas["inference"] if name == "fp32" else ""]
        for name, value in memory["inference"].items()
    ]
    rows.append(["KV cache (fp16, one batch at the sequence length)", memory["kv_cache"], ""])
    rows += [
        ["full fine-tuning, one GPU", memory["full"], formulas["full"]],
        [
            f"LoRA r={values.get('lora_r', 16)} ({report['lora_trainable']:,} trainable)",
            memory["lora"],
            formulas["lora"],
        ],
        ["QLoRA", memory["qlora"], formulas["qlora"]],
    ]
    for name, label in (
        ("ddp", "DDP"),
        ("zero1", "ZeRO-1"),
        ("zero2", "ZeRO-2"),
        ("zero3", "ZeRO-3"),
        ("fsdp", "FSDP"),
    ):
        fits = "fits" if report["fits"][name] else f"does not fit in {gpu['memory_gb']:.0f} GB"
        shown = formulas["per_gpu"] if name == "ddp" else ""
        rows.append(
            [f"full fine-tuning per GPU, {label} over {gpu['count']:,} ({fits})", report["per_gpu_gb"][name], shown]
        )
    table = pd.DataFrame(rows, columns=["what", "GB", "formula"])
    return summary, table


def build() -> None:
    """The panel (inside a tab of Inside the model); its API is `/scale`."""
    gr.Markdown(
        "The arithmetic of scale from the lectures: how much data is compute-optimal, what training costs in "
        "FLOPs, GPU-hours and carbon, and what inference, fine-tuning and sharded training need in memory. The "
        "memory figures use the same tensor-by-tensor model as the Fine-tune tab's plan, checked against measured "
        "runs of the bundled model (`bench/memory_bench.py`)."
    )
    with gr.Row():
        params = bind(
            scale.ScaleSpec,
            "params",
            gr.Dropdown(
                list(scale.PRESETS),
                value=knobs.default(scale.ScaleSpec, "params"),
                allow_custom_value=True,
                label=knobs.label(scale.ScaleSpec, "params"),
                info="a preset, or type a size (3B, 350M, 2.7e9)",
                elem_id="scale-params",
            ),
        )
        settings = controls(scale.ScaleSpec, SETTINGS[:3])
    with gr.Accordion("Assumptions: utilisation, grid, batch, checkpointing, LoRA rank", open=False):
        with gr.Row():
            settings |= controls(scale.ScaleSpec, SETTINGS[3:])
    go = gr.Button("Calculate", variant="primary", elem_id="scale-go")
    summary = gr.Markdown(elem_id="scale-summary")
    table = gr.Dataframe(label="Memory (GB = 10⁹ bytes)", interactive=False, wrap=True, elem_id="scale-memory")
    inputs = {"params": params, **settings}
    gr.on([go.click, params.change], calculate, None, [summary, table], inputs_kwargs=inputs, api_name="scale")
