"""Inside the model › Compression: the same model in fewer bits, and pruned, measured live here
(pipelines/inside/compression.py) -- what each saves and what it costs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import knobs
from pipelines.engine import models
from pipelines.inside import compression
from pipelines.store import jobs
from pipelines.store.files import copy_upload
from pipelines.train import distill
from pipelines.train.job import refuse_taken

from . import jobs_panel
from .controls import on_submit, refuse_out_of_range
from .guard import admin_only
from .spec_controls import bind, build_spec, control, controls

# one measurement at a time (each uses every core and a copy of the model); others wait in the queue
HEAVY: dict[str, Any] = {"concurrency_id": "compression", "concurrency_limit": 1}
COLUMNS = ["variant", "MB", "tokens/s", "perplexity", "agreement with fp32", "greedy continuation", "what it is"]


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            [
                row["name"],
                round(row["size_mb"], 1),
                "—" if row["tokens_per_second"] is None else round(row["tokens_per_second"], 1),
                round(row["perplexity"], 2),
                f"{row['greedy_agreement']:.1%}",
                row["sample"],
                row["described"] + ("" if row["tokens_per_second"] is not None else f" ({row['timed_by']})"),
            ]
            for row in rows
        ],
        columns=COLUMNS,
    )


def _summary(rows: list[dict[str, Any]], pending: list[str]) -> str:
    if pending:
        return f"Measured {len(rows)} of {len(rows) + len(pending)}; now **{pending[0]}**…"
    reference = rows[0]
    smallest = min(rows, key=lambda row: row["size_mb"])
    measured = {row["name"]: row for row in rows}
    parts = [
        f"Perplexity and agreement on the same {reference['text_tokens']} tokens. The smallest, "
        f"**{smallest['name']}**, is {reference['size_mb'] / smallest['size_mb']:.1f}× smaller than fp32 at perplexity "
        f"{smallest['perplexity']:.2f} (fp32: {reference['perplexity']:.2f}). *Agreement* is the share of positions "
        "where the variant's most likely next token is fp32's."
    ]
    if {"int8_weights", "int8_dynamic"} <= measured.keys():
        parts.append(
            "Compare **int8_weights** with **int8_dynamic**: the same 8-bit weights, but rounding each layer's "
            "*input* to 8 bits with one scale per tensor costs more, because a few activation channels are much "
            "larger than the rest (the outliers LLM.int8() and SmoothQuant work around)."
        )
    if "q4_1" in measured and measured["q4_1"]["greedy_agreement"] > 0.999:
        parts.append(
            "Q4_1 matches fp32: the model ships as GGUF Q4_1, so fp32 here is those 4-bit weights widened, and the "
            "other rows show what a second rounding does."
        )
    return " ".join(parts)


def measure(variants: list[str], text: str, **values: Any) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each variant's row as soon as it is measured."""
    spec = build_spec(
        compression.CompressSpec, {**values, "variants": variants or [], "text": (text or "").strip() or None}
    )
    rows: list[dict[str, Any]] = []
    yield _summary(rows, spec.variants), _table(rows)
    for row in compression.measure_variants(models.get_handle(), spec):
        rows.append(row)
        yield _summary(rows, spec.variants[len(rows) :]), _table(rows)


def _sparsities(text: str | None) -> list[str]:
    """The box's numbers as written; the spec reads them and refuses what is not a number."""
    return (text or "").replace(",", " ").split()


def prune(sparsities: str, text: str, **values: Any) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """The pruning curve, one sparsity at a time: perplexity, agreement, and what the model writes."""
    spec = build_spec(
        compression.PruneSpec,
        {**values, "sparsities": sparsities, "text": (text or "").strip() or None},
        parse={"sparsities": _sparsities},
    )
    rows: list[dict[str, Any]] = []
    for row in compression.measure_pruning(models.get_handle(), spec):
        rows.append(row)
        curve = pd.DataFrame(
            {
                "sparsity": [r["sparsity"] for r in rows],
                "agreement with the unpruned model": [r["greedy_agreement"] for r in rows],
            }
        )
        table = pd.DataFrame(
            [[f"{r['sparsity']:.0%}", f"{r['zero_share']:.1%}", round(r["perplexity"], 2), r["sample"]] for r in rows],
            columns=["sparsity", "weights at zero", "perplexity", "greedy continuation"],
        )
        note = (
            f"{len(rows)} of {len(spec.sparsities)} measured. Magnitude pruning removes the smallest weights of every "
            "linear layer, ranked over the whole model. A trained model tolerates a little (the smallest weights "
            "carry little), then perplexity climbs steeply: pruning at scale is followed by training again to "
            "recover, and only structured sparsity (whole rows, 2:4 patterns) runs faster on real hardware — zeros "
            "in a dense matrix still cost a multiply."
        )
        yield note, curve, table


def adapters(**values: Any) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each adapter's trainable share and speed as it is timed."""
    spec = build_spec(compression.AdapterCostSpec, values)
    rows: list[dict[str, Any]] = []
    for row in compression.measure_adapters(models.get_handle(), spec):
        rows.append(row)
        base = rows[0]["tokens_per_second"]
        table = pd.DataFrame(
            [
                [
                    r["name"],
                    f"{r['trainable']:,}",
                    f"{r['share']:.2%}",
                    round(r["tokens_per_second"], 1),
                    round(100 * (r["tokens_per_second"] / base - 1), 1),
                ]
                for r in rows
            ],
            columns=["model", "trainable parameters", "share", "tokens/s", "speed vs base (%)"],
        )
        note = (
            "Every adapter starts as the identity (LoRA's B and the bottleneck's up-projection are zero), so all four "
            "write the same text: only the cost differs. **LoRA** adds B·A beside each weight: unmerged it is extra "
            "matrix products at every token; **merged** (W + B·A, computed once) it costs nothing at inference. "
            "**Bottleneck adapters** (Houlsby) are new layers after each attention and MLP: they stay in the path of "
            "every token and cannot be merged, since a non-linearity sits inside them."
        )
        yield note, table


STUDENT_COLUMNS = [
    "model",
    "parameters",
    "MB",
    "tokens/s",
    "perplexity",
    "agreement with the teacher",
    "greedy continuation",
]


def _student_note(name: str, rows: list[dict[str, Any]]) -> str:
    made = distill.made(name)
    parts = [
        "**Distillation** trains a smaller *student* to reproduce a *teacher*'s whole next-token distribution "
        "(soft targets), not only its top token. This student is the teacher with whole blocks removed — those "
        "that change the residual stream least — which alone breaks it (the *cut* row); LoRA on the blocks that "
        "remain was then trained with trl's GKD trainer on answers the teacher wrote."
    ]
    if made:
        parts.append(made)
    if len(rows) == 3:
        teacher, cut, student = rows
        parts.append(
            f"Measured now: {student['parameters'] / teacher['parameters']:.0%} of the teacher's parameters, "
            f"{student['tokens_per_second'] / teacher['tokens_per_second']:.2f}× its speed; perplexity "
            f"{teacher['perplexity']:.1f} (teacher) → {cut['perplexity']:.0f} (cut) → {student['perplexity']:.1f} "
            "(distilled)."
        )
    return " ".join(parts)


def student(**values: Any) -> Iterator[tuple[str, pd.DataFrame]]:
    """Teacher, cut student and distilled student, each row as it is measured."""
    spec = build_spec(compression.StudentSpec, values)
    rows: list[dict[str, Any]] = []
    for row in compression.measure_student(models.get_handle(), spec):
        rows.append(row)
        table = pd.DataFrame(
            [
                [
                    r["name"],
                    f"{r['parameters'] / 1e6:.1f}M",
                    round(r["size_mb"], 1),
                    round(r["tokens_per_second"], 1),
                    round(r["perplexity"], 2),
                    f"{r['greedy_agreement']:.1%}",
                    r["sample"],
                ]
                for r in rows
            ],
            columns=STUDENT_COLUMNS,
        )
        yield _student_note(spec.student, rows), table


def _offered_students() -> Any:
    names = list(distill.offered())
    return gr.update(choices=names, value=names[0] if names else None)


DISTILL_KINDS = ("distill",)
DISTILL_SHOWN = ("layers", "epochs", "max_steps", "learning_rate")
DISTILL_MORE = (
    "answer_tokens", "beta", "lmbda", "batch_size", "max_length", "lora_r", "lora_alpha", "eval_fraction", "seed",
)  # fmt: skip


@admin_only("start training")
def start_distill(
    prompts: str | None, shown: str | None = None, request: gr.Request | None = None, **settings: Any
) -> Any:
    """Check what can fail before a model loads (name, prompts), then queue the job."""
    refuse_out_of_range(shown)
    job_id = uuid.uuid4().hex[:12]
    path = None
    if prompts:
        target = jobs.job_dir(job_id) / "inputs"
        path = str(copy_upload(prompts, target, max_bytes=50_000_000, allowed_suffixes=(".jsonl", ".json", ".csv")))
    spec = build_spec(distill.DistillSpec, settings, prompts=path)
    refuse_taken(distill.student_path(spec.out), "student", spec.out, spec.overwrite)
    distill.prompt_texts(spec.prompts)
    jobs.start("distill", spec.out, spec.to_dict(), job_id=job_id)
    gr.Info(f"Distillation {spec.out!r} started; progress appears below (about 8 minutes on 2 cores).")
    return jobs_panel.refresh_choices(DISTILL_KINDS, job_id)


def build(demo: gr.Blocks) -> None:
    """The panel (inside a tab of Inside the model); its APIs are `/compress`, `/prune` and `/adapter_costs`."""
    gr.Markdown(
        "Compression makes a model smaller or faster by storing its weights in fewer bits (**quantization**) or "
        "removing some (**pruning**). Each variant below is built from a fresh copy of the app's model and measured "
        "**live on this machine**: size of its weights, greedy decoding speed, perplexity on the same text, and how "
        "often its most likely next token agrees with fp32. About 25 s for all of them on 2 CPU cores."
    )
    with gr.Row():
        variants = bind(
            compression.CompressSpec,
            "variants",
            gr.CheckboxGroup(
                list(compression.VARIANTS),
                value=list(compression.VARIANTS),
                label=knobs.label(compression.CompressSpec, "variants"),
                info="fp32 is always measured: it is the reference",
                elem_id="compress-variants",
                scale=3,
            ),
        )
        settings = controls(compression.CompressSpec, ("new_tokens", "prompt"))
    text = gr.Textbox(
        label="Text for perplexity (empty: the bundled general text)",
        lines=2,
        max_lines=8,
        elem_id="compress-text",
    )
    go = gr.Button("Measure the variants", variant="primary", elem_id="compress-go")
    summary = gr.Markdown(elem_id="compress-summary")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="compress-table")
    gr.Markdown("#### Pruning")
    with gr.Row():
        sparsities = bind(
            compression.PruneSpec,
            "sparsities",
            gr.Textbox(
                value=" ".join(f"{v:g}" for v in knobs.default(compression.PruneSpec, "sparsities")),
                label=knobs.label(compression.PruneSpec, "sparsities"),
                info="shares of weights set to zero, smallest first (up to 12 numbers, 0 to 0.99)",
                elem_id="prune-sparsities",
                scale=3,
            ),
        )
        prune_settings = controls(compression.PruneSpec, ("new_tokens",))
        prune_button = gr.Button("Prune and measure", elem_id="prune-go", scale=1)
    # one prompt for both measurements
    prune_settings["prompt"] = bind(compression.PruneSpec, "prompt", settings["prompt"])
    prune_note = gr.Markdown(elem_id="prune-note")
    curve = gr.LinePlot(
        x="sparsity", y="agreement with the unpruned model", y_lim=[0, 1], height=260, elem_id="prune-curve"
    )
    prune_table = gr.Dataframe(interactive=False, wrap=True, elem_id="prune-table")
    gr.Markdown("#### Adapters at inference: LoRA, merged or not, and bottleneck adapters")
    with gr.Row():
        adapter_settings = controls(compression.AdapterCostSpec, ("lora_r", "bottleneck"))
        adapter_button = gr.Button("Time the adapters", elem_id="adapters-go")
    adapter_settings["prompt"] = bind(compression.AdapterCostSpec, "prompt", settings["prompt"])
    adapter_settings["new_tokens"] = bind(compression.AdapterCostSpec, "new_tokens", settings["new_tokens"])
    adapter_note = gr.Markdown(elem_id="adapters-note")
    adapter_table = gr.Dataframe(interactive=False, wrap=True, elem_id="adapters-table")
    _build_distillation(demo, settings)  # the distilled student, and distilling one's own
    go.click(measure, [variants, text], [summary, table], inputs_kwargs=settings, api_name="compress", **HEAVY)
    adapter_button.click(
        adapters, None, [adapter_note, adapter_table], inputs_kwargs=adapter_settings, api_name="adapter_costs", **HEAVY
    )
    prune_button.click(
        prune,
        [sparsities, text],
        [prune_note, curve, prune_table],
        inputs_kwargs=prune_settings,
        api_name="prune",
        **HEAVY,
    )


def _build_distillation(demo: gr.Blocks, settings: dict[str, Any]) -> None:
    """The distilled student beside its teacher (`/student`), and a distillation job of one's own;
    `settings` are the panel's shared prompt and timed-tokens controls."""
    gr.Markdown("#### Distillation: a smaller student taught by the model")
    with gr.Row():
        offered = list(distill.offered())
        student_settings = {
            "student": bind(
                compression.StudentSpec,
                "student",
                gr.Dropdown(
                    offered,
                    value=offered[0] if offered else None,
                    label=knobs.label(compression.StudentSpec, "student"),
                    info="trained with `python -m pipelines distill` (the bundled one is ready-made)",
                    elem_id="student-name",
                    scale=3,
                ),
            )
        }
        student_button = gr.Button("Compare with the teacher", elem_id="student-go", scale=1)
    student_settings["prompt"] = bind(compression.StudentSpec, "prompt", settings["prompt"])
    student_settings["new_tokens"] = bind(compression.StudentSpec, "new_tokens", settings["new_tokens"])
    student_note = gr.Markdown(elem_id="student-note")
    student_table = gr.Dataframe(interactive=False, wrap=True, elem_id="student-table")
    student_settings["student"].focus(
        _offered_students, None, student_settings["student"], queue=False, api_visibility="private"
    )
    student_button.click(
        student, None, [student_note, student_table], inputs_kwargs=student_settings, api_name="student", **HEAVY
    )
    with gr.Accordion("Distil a student of your own (a background job, ~8 minutes)", open=False):
        with gr.Column(elem_id="distill-settings"):
            with gr.Row():
                distill_settings = {"out": control(distill.DistillSpec, "out", value="my-student")}
                distill_settings |= controls(distill.DistillSpec, DISTILL_SHOWN)
            prompts = bind(
                distill.DistillSpec,
                "prompts",
                gr.File(label="Prompts for the teacher to answer (a 'prompt' column; empty: the bundled ones)"),
            )
            with gr.Accordion("More distillation settings", open=False):
                distill_settings |= controls(distill.DistillSpec, DISTILL_MORE)
                distill_settings["overwrite"] = control(distill.DistillSpec, "overwrite")
            distill_button = gr.Button("Start distillation", variant="primary", elem_id="distill-go")
        panel = jobs_panel.build(demo, DISTILL_KINDS, {"loss": "distillation loss (JSD)"}, title="Distillation jobs")
    on_submit(
        distill_button,
        start_distill,
        [prompts],
        panel.job,
        form="distill-settings",
        settings=distill_settings,
        api_name="start_distillation",
    )
    jobs_panel.loads_capsules(panel, distill_settings)
    jobs_panel.when_succeeded(panel, lambda job: [_offered_students()], [], [student_settings["student"]])
