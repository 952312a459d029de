"""Fine-tune tab: data check, LoRA / prompt-tuning settings and plan, background job, results."""

from __future__ import annotations

import html
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from pipelines import knobs
from pipelines.config import DATASETS
from pipelines.engine import adapters, model_structure, models
from pipelines.engine.hardware import detect, plan_device, train_precision
from pipelines.store import jobs, personal_data
from pipelines.store.files import copy_upload
from pipelines.train import finetune, memory_plan, sft_data
from pipelines.train.training import device_and_precision

from . import jobs_panel, metric_view
from .controls import (
    cleared_first,
    fill_when_model_ready,
    how_it_works,
    on_submit,
    refuse_out_of_range,
    token_html,
)
from .errors import UserError
from .guard import admin_only
from .pickers import FIRST, LiveDropdown
from .sidebar import Shared, adapter_choices
from .spec_controls import bind, build_spec, control, controls, named

SAMPLES_DIR = DATASETS
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".tsv")
SERIES = {"loss": "train loss", "eval_loss": "eval loss"}
SAMPLE_COLUMNS = ("prompt", "before", "after", "reference")  # the answers side by side, the reference last


def sample_datasets() -> dict[str, Path]:
    return {p.name: p for p in sorted(SAMPLES_DIR.glob("*.jsonl"))}


def _data_path(upload: str | None, sample: str | None) -> Path:
    if upload:
        return Path(upload)
    if sample and sample in sample_datasets():
        return sample_datasets()[sample]
    raise UserError("Upload a dataset or pick a bundled sample.")


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:,.1f} GiB"


def _count(n: int) -> str:
    """Parameter counts short enough for a narrow table: 134.5M, 2.44M, 11.5k."""
    if n >= 10**8:
        return f"{n / 1e6:.1f}M"
    if n >= 10**6:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}k" if n >= 10**4 else f"{n:,}"


def check_data(upload: str | None, sample: str | None, max_length: float):
    """Validate the chosen data: summary, preview, row problems, and one loss-mask example."""
    path = _data_path(upload, sample)
    data = sft_data.load_file(path)
    tokenizer = models.get_handle().tokenizer
    problems = data.problems + sft_data.check_lengths(data, tokenizer, int(max_length))
    bad = len({p.row for p in problems})
    summary = f"**{html.escape(path.name)}** — {data.summary()}."
    if bad:
        summary += (
            f"  \n⚠️ **{bad} rows have problems** (listed under *The data* below). Fix the file, or tick *Skip rows "
            "with problems*."
        )
    else:
        summary += "  \n✅ Every row is usable."
    private = sft_data.personal_data_rows(data)
    if private["total"]:
        shown = ", ".join(str(row) for row in private["rows"][:12]) + ("…" if len(private["rows"]) > 12 else "")
        summary += (
            f"  \n🔒 **Personal data in {len(private['rows'])} rows** ({shown}): "
            f"{html.escape(personal_data.described(private))}. A fine-tuned model can repeat what it was trained on: "
            "check them before training (a public figure's name is fine, a private person's details are not)."
        )
    problem_table = pd.DataFrame(
        [[p.row, p.column or "", p.message] for p in problems[:500]], columns=["row", "column", "problem"]
    )
    preview = pd.DataFrame(data.preview)
    mask = _loss_mask_html(tokenizer, data.conversations[0]) if data.conversations else ""
    return summary, preview, problem_table, mask, data.usable


def warn_small_data(
    usable: int | None, eval_fraction: float, batch_size: float, grad_accum: float, epochs: float, max_steps: float
) -> str:
    """The plan's warning when the data is too small for the run (or the run too long for the data)."""
    warning = finetune.small_data_warning(
        int(usable or 0),
        eval_fraction=float(eval_fraction or 0),
        batch_size=int(batch_size or 1),
        grad_accum=int(grad_accum or 1),
        epochs=float(epochs or 0),
        max_steps=int(max_steps if max_steps is not None else -1),
    )
    return f"⚠️ {warning}" if warning else ""


def _loss_mask_html(tokenizer: Any, conversation: Any) -> str:
    pieces = finetune.loss_mask_example(tokenizer, conversation)
    spans = "".join(
        f"<span class='tok {'loss' if loss else 'noloss'}'>{token_html(text)}</span>" for text, loss in pieces
    )
    counted = sum(loss for _, loss in pieces)
    return (
        f"<p class='muted'>One training example as the model sees it: <span class='tok loss'>green tokens</span> carry "
        f"the loss ({counted} of {len(pieces)}); grey ones are context only.</p><div class='loss-mask'>{spans}</div>"
    )


def update_plan(
    method: str,
    lora_r: float,
    targets: list[str],
    virtual_tokens: float,
    batch_size: float = 8,
    max_length: float = 512,
    checkpointing: bool = False,
    lora_dropout: float = 0.05,
    train_blocks: list[Any] | None = None,
):
    """Trainable parameters of the chosen method, and every method's peak memory at this batch and length."""
    model = models.get_handle().base_model
    _, precision = device_and_precision()
    step = memory_plan.Step(
        batch=max(1, int(batch_size or 1)),
        length=max(1, int(max_length or 1)),
        mixed_precision=precision.bf16 or precision.fp16,
        checkpointing=bool(checkpointing),
    )
    result = finetune.plan(
        model,
        method,
        step,
        lora_r=int(lora_r),
        target_modules=targets or [],
        num_virtual_tokens=int(virtual_tokens),
        lora_dropout=float(lora_dropout or 0),
        train_blocks=finetune.parse_blocks(train_blocks),
    )
    chosen = next((r for r in result.rows if r["method"].lower().startswith(method.split("-")[0])), result.rows[0])
    text = (
        f"**{result.trainable_params:,}** trainable parameters of **{result.total_params:,}** "
        f"(**{result.trainable_percent:.2f}%**) — {result.total_params / max(result.trainable_params, 1):,.0f}× fewer "
        f"than full fine-tuning. Peak memory of one step at {int(batch_size or 1)} × {int(max_length or 1)} tokens: "
        f"**{_mb(chosen['total'])}** (every method: *Memory plan* below)."
    )
    table = pd.DataFrame(
        [
            [
                r["method"],
                _count(r["trainable"]),
                _mb(r["weights"]),
                _mb(r["optimizer"]),
                _mb(r["gradients"]),
                _mb(r["activations"]),
                _mb(r["loss"]),
                _mb(r["total"]),
            ]
            for r in result.rows
        ],
        columns=["method", "trainable", "weights", "Adam", "grads", "activations", "loss grad", "peak"],
    )
    return text, table


def evaluation_cost(eval_samples: float) -> str:
    """What the evaluation after training costs: its generated answers take most of its time."""
    n = int(eval_samples or 0)
    defaults = finetune.FinetuneSpec(data="-", out="x")
    answers = (
        (
            f"and **{n}** held-out answer{'s' if n != 1 else ''} from each model (**{2 * n}** generations of up to "
            f"{defaults.eval_max_new_tokens} tokens, most of the evaluation's time)"
        )
        if n
        else "and no answers (0)"
    )
    return (
        "<span class='muted'>After training, the job measures the base model and the tuned one: held-out loss, "
        f"perplexity on general text (forgetting), {answers}. The job's progress shows each phase with its own ETA.</span>"
    )


@admin_only("start training")
def start_job(
    upload: str | None, sample: str | None, shown: str | None = None, request: gr.Request | None = None, **settings: Any
):
    """Validate everything, copy the data next to the job, and queue it (settings by FinetuneSpec field name;
    `shown`: what the form shows out of range, filled in the browser)."""
    refuse_out_of_range(shown)
    source = _data_path(upload, sample)
    job_id = uuid.uuid4().hex[:12]
    spec = build_spec(finetune.FinetuneSpec, settings, data="(set below)")
    data = sft_data.load_file(source)  # the file's problems first: a garbage upload is about the file, not the name
    sft_data.accept(data, data.problems, skip_bad_rows=spec.skip_bad_rows)
    named(finetune.FinetuneSpec, lambda: finetune.check_can_write(spec))
    copied = copy_upload(
        source, jobs.job_dir(job_id) / "inputs", max_bytes=sft_data.MAX_FILE_BYTES, allowed_suffixes=DATA_SUFFIXES
    )
    spec.data = str(copied)
    job = jobs.start("finetune", spec.out, spec.to_dict(), job_id=job_id)
    gr.Info(f"Fine-tuning job for {spec.out!r} queued; progress appears below.")
    return jobs_panel.refresh_choices(("finetune",), job.id)


def results(job_id: str | None):
    """Before/after numbers and sample outputs of a finished fine-tuning job."""
    empty = (
        pd.DataFrame(columns=["metric", "base model", "fine-tuned", "change"]),
        pd.DataFrame(columns=list(SAMPLE_COLUMNS)),
    )
    if not job_id:
        return "", *empty
    job = jobs.get(job_id)
    if job.status != jobs.SUCCEEDED:
        return "Results appear here when the job succeeds.", *empty
    before, after = job.result.get("before", {}), job.result.get("after", {})
    names = {
        "loss": "eval loss",
        "perplexity": "eval perplexity",
        "rougeL": "ROUGE-L (F1)",
        "bleu": "BLEU",
        "general_perplexity": "perplexity on general text (forgetting probe)",
    }
    rows = []
    for key, label in names.items():
        b, a = before.get(key), after.get(key)
        if b is None and a is None:
            continue
        change = f"{a - b:+.4g}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
        rows.append([label, None if b is None else round(b, 4), None if a is None else round(a, 4), change])
    table = pd.DataFrame(rows, columns=["metric", "base model", "fine-tuned", "change"])
    samples = pd.DataFrame(job.result.get("samples", []), columns=list(SAMPLE_COLUMNS))
    done = f"after {job.result.get('steps')} steps ({job.result.get('seconds', 0):.0f} s)"
    size = f", {job.result['size_mb']:,.1f} MiB" if job.result.get("size_mb") is not None else ""
    if job.result.get("model_dir"):  # full or selective fine-tuning: a whole model
        where = html.escape(job.result["model_dir"])
        text = (
            f"Model **{html.escape(job.name)}** saved to `{where}`{size} {done}. It is a whole model, not an "
            f"adapter: serve it with `PLAYGROUND_MODEL={where} python app.py` to use it in every tab."
        )
    else:
        text = (
            f"Adapter **{html.escape(job.name)}** saved to `{html.escape(job.result.get('adapter_dir', ''))}`{size} "
            f"{done}. Pick it in the sidebar to use it in Generate and Chat."
        )
    return text, table, samples


def method_panels(method: str) -> tuple[dict, dict, dict]:
    """Which method-specific settings show: LoRA's, prompt tuning's, or the block picker."""
    return (
        gr.update(visible=method == "lora"),
        gr.update(visible=method == "prompt-tuning"),
        gr.update(visible=method == "selective"),
    )


def load_preset(label: str | None) -> list[Any]:
    """A preset's settings into the form (finetune.PRESETS); the rest of the form is left as it is."""
    chosen = finetune.PRESETS.get(label or "")
    if chosen is None:
        return [gr.update()] * 8
    return [
        chosen["method"],
        *method_panels(chosen["method"]),
        chosen["learning_rate"],
        chosen["max_steps"],
        chosen["eval_samples"],
        chosen["out"],
    ]


def pick_answer(event: gr.SelectData) -> tuple[Any, Any]:
    """A clicked row of the samples: its reference, and the clicked answer (before or after; the tuned one otherwise)."""
    row = list(event.row_value or [])
    if len(row) < len(SAMPLE_COLUMNS):
        return gr.update(), gr.update()
    column = event.index[1] if isinstance(event.index, (list, tuple)) else 2
    answer = row[column] if SAMPLE_COLUMNS[column] in ("before", "after") else row[SAMPLE_COLUMNS.index("after")]
    return row[SAMPLE_COLUMNS.index("reference")], answer


def explain_or_blank(reference: str, candidate: str) -> str:
    """The explanation of a picked pair; nothing for an empty answer (a row may lack one)."""
    if not (reference or "").strip() or not (candidate or "").strip():
        return "<p class='muted'>This row has no answer to compare.</p>"
    return metric_view.explain_html(reference, candidate)


def adapter_names() -> list[tuple[str, str]]:
    return adapters.choices()


@admin_only("merge adapters")
def merge_adapter(name: str | None, request: gr.Request | None = None) -> str:
    if not name:
        raise UserError("Choose an adapter.")
    path = adapters.merge(name)
    return f"Merged model saved to `{path}` — load it with `AutoModelForCausalLM.from_pretrained`, or set `PLAYGROUND_MODEL` to it."


@admin_only("export adapters")
def download_adapter(name: str | None, request: gr.Request | None = None) -> str:
    if not name:
        raise UserError("Choose an adapter.")
    return str(adapters.export_zip(name))


def new_adapter(job: jobs.JobInfo) -> tuple[Any, Any]:
    """A fine-tune succeeded: the adapter pickers offer it (the merge picker selects it). The sidebar's
    choice is left alone: a job only adds an adapter, and the poll that notices it may answer just after
    the person picked one (a value sent with the poll would put the old choice back)."""
    names = adapter_names()
    made = job.name if job.name in names else None
    return gr.update(choices=adapter_choices()), gr.update(choices=names, value=made or gr.skip())


def build(demo: gr.Blocks, shared: Shared) -> dict[str, Any]:
    """Lay out the tab; returns what a lesson step may set here (the fields a preset fills)."""
    device = plan_device(detect()).device
    precision = train_precision(detect(), device)
    qlora_ok, qlora_reason = finetune.qlora_available()
    samples = list(sample_datasets())
    Spec = finetune.FinetuneSpec
    defaults = Spec(data="-", out="my-adapter")

    # The common path -- data, method, a name, Start, the job running -- fits one screen at 1400 x 900
    # (issue 42: the tab was nine sections and 4,600 px tall); the rest is folded where it is needed.
    with gr.Row():
        with gr.Column(scale=4):
            gr.Markdown("#### 1 · Data")
            sample = gr.Dropdown(samples, value=samples[0] if samples else None, label="Bundled sample")
            upload = gr.File(
                label="…or upload JSONL / CSV / Parquet",
                file_types=list(DATA_SUFFIXES),
                type="filepath",
                elem_id="ft-upload",
            )
            summary = gr.Markdown()
            with gr.Accordion("The data: format, preview, problems, and which tokens carry the loss", open=False):
                gr.Markdown(
                    "<span class='muted'>Formats: `prompt` + `response`; Alpaca `instruction` (+ `input`) + `output`; "
                    "or conversational `messages`. The format is detected from the fields.</span>"
                )
                skip_bad = control(Spec, "skip_bad_rows")
                preview = gr.Dataframe(label="Preview", interactive=False, wrap=True, max_height=240)
                problems = gr.Dataframe(label="Row problems", interactive=False, wrap=True, max_height=240)
                loss_mask = gr.HTML()
            panel = jobs_panel.build(
                demo, ("finetune",), SERIES, title="3 · Training jobs (they keep running if you close the page)"
            )
        with gr.Column(scale=5, elem_id="ft-settings"):
            gr.Markdown("#### 2 · Method and settings")
            with gr.Row():
                method = control(Spec, "method", scale=3)
                preset = gr.Dropdown(
                    list(finetune.PRESETS),
                    value=None,
                    label="Preset (optional)",
                    info="a lesson's method, rate, steps and name",
                    elem_id="ft-preset",
                    scale=2,
                )
            with gr.Group() as lora_group:
                with gr.Row():
                    lora = controls(Spec, ["lora_r", "lora_alpha"])
            virtual_tokens = control(Spec, "num_virtual_tokens", visible=False)
            blocks = bind(
                Spec,
                "train_blocks",
                gr.CheckboxGroup(
                    [],
                    label=knobs.label(Spec, "train_blocks"),
                    info=knobs.knobs(Spec)["train_blocks"].help,
                    elem_id="ft-blocks",
                    visible=False,
                ),
            )
            with gr.Row():
                schedule = controls(
                    Spec, ["learning_rate", "epochs", "max_steps"], learning_rate={"value": defaults.lr}
                )
            data_warning = gr.Markdown(elem_id="ft-data-warning")
            plan_text = gr.Markdown(elem_id="ft-plan-text")
            with gr.Row():
                name = control(Spec, "out", value="my-adapter", scale=3)
                overwrite = control(Spec, "overwrite", scale=1)
            start = gr.Button("Start fine-tuning", variant="primary")
            with gr.Accordion("Advanced settings: layers, batches, precision, evaluation", open=False):
                with gr.Group():  # LoRA's own (QLoRA's too); the other methods ignore them
                    lora |= controls(Spec, ["lora_dropout"])
                    targets = bind(
                        Spec,
                        "target_modules",
                        gr.CheckboxGroup(
                            list(finetune.DEFAULT_TARGETS),
                            value=list(defaults.target_modules),
                            label=knobs.label(Spec, "target_modules"),
                            info=knobs.knobs(Spec)["target_modules"].help,
                            elem_id="ft-targets",
                            interactive=False,  # until the loaded model's own layer names replace the defaults
                        ),
                    )
                with gr.Row():
                    batching = controls(Spec, ["batch_size", "grad_accum", "max_length"])
                with gr.Row():
                    seed = control(Spec, "seed")
                    checkpointing = control(Spec, "gradient_checkpointing")
                    qlora = control(Spec, "qlora", interactive=qlora_ok, info=qlora_reason)
                with gr.Row():
                    measuring = controls(Spec, ["eval_fraction", "eval_samples"])
                eval_cost = gr.Markdown(evaluation_cost(defaults.eval_samples))
                more = controls(Spec, ["group_by_length", "eval_max_new_tokens"])
                gr.Markdown(
                    f"<span class='muted'>Precision: {precision.reason}. Batches are padded per batch and grouped by "
                    "length.</span>"
                )
            with gr.Accordion("Memory plan: every method at these settings", open=False):
                gr.Markdown(
                    "<span class='muted'>Peak memory of one training step at the batch size and length set above "
                    "(the worst case: every example at the maximum length; shorter batches need less). Activations "
                    "grow with batch × length, not with the trainable weights; *Adam* is the optimizer's two moments, "
                    "*loss grad* the logits-sized tensors at the start of the backward pass.</span>"
                )
                plan_table = gr.Dataframe(interactive=False, wrap=True, elem_id="ft-plan")
    bind(Spec, "data", upload)
    bind(Spec, "data", sample)
    settings = {
        "skip_bad_rows": skip_bad,
        "method": method,
        **lora,
        "target_modules": targets,
        "num_virtual_tokens": virtual_tokens,
        "train_blocks": blocks,
        **schedule,
        **batching,
        "seed": seed,
        "gradient_checkpointing": checkpointing,
        "qlora": qlora,
        **measuring,
        **more,
        "out": name,
        "overwrite": overwrite,
    }
    lora_r, learning_rate, eval_samples = lora["lora_r"], schedule["learning_rate"], measuring["eval_samples"]
    max_length = batching["max_length"]

    with gr.Accordion("4 · Results: base vs fine-tuned on held-out data", open=True):
        result_text = gr.Markdown()
        result_table = gr.Dataframe(interactive=False, wrap=True)
        result_samples = gr.Dataframe(
            interactive=False, wrap=True, max_height=400, column_widths=["22%", "26%", "26%", "26%"]
        )
        gr.Markdown("<span class='muted'>Click an answer above to see how its ROUGE-L and BLEU are computed.</span>")
        explainer = metric_view.build()
    result_samples.select(
        pick_answer, None, [explainer["reference"], explainer["candidate"]], api_visibility="private"
    ).then(
        explain_or_blank, [explainer["reference"], explainer["candidate"]], explainer["html"], api_visibility="private"
    )
    with gr.Accordion("Adapters: merge into the base model, or download", open=False):
        with gr.Row():
            adapter_pick = LiveDropdown(
                adapter_names, fallback=FIRST, label="Adapter", scale=3, elem_id="ft-adapter-pick"
            )
            merge_button = gr.Button("Merge & export", scale=1)
            zip_button = gr.Button("Download .zip", scale=1)
        merge_result = gr.Markdown()
        zip_file = gr.File(label="Adapter archive", interactive=False)
    how_it_works("finetune")

    def fill_targets() -> dict:
        linear = finetune.linear_module_names(models.get_handle().base_model)
        targets.choices = [(name, name) for name in linear]  # API calls are checked against the model's layers too
        return gr.update(choices=linear, value=[t for t in defaults.target_modules if t in linear], interactive=True)

    fill_when_model_ready(demo, fill_targets, None, targets)

    def fill_blocks() -> dict:
        count = len(model_structure.decoder_blocks(models.get_handle().base_model))
        blocks.choices = [(str(b), b) for b in range(count)]
        return gr.update(choices=blocks.choices, value=list(range(max(0, count - 2), count)))

    fill_when_model_ready(demo, fill_blocks, None, blocks)
    eval_samples.change(evaluation_cost, eval_samples, eval_cost, api_visibility="private", show_progress="hidden")
    data_inputs = [upload, sample, max_length]
    usable = gr.State(0)  # conversations the chosen data gives, for the small-data warning
    data_outputs = [summary, preview, problems, loss_mask, usable]
    # the previous file's summary goes first: a refused file must not leave it standing as if it were this one's
    upload.change(  # one source at a time: the sample says so while an upload is the one used
        lambda chosen: gr.update(
            interactive=not chosen, info="not used: the uploaded file is the training data" if chosen else None
        ),
        upload,
        sample,
        api_visibility="private",
        show_progress="hidden",
    )
    checked = cleared_first([upload.change, sample.change, demo.load], data_outputs[:4]).then(
        check_data, data_inputs, data_outputs, api_name="check_dataset"
    )
    warning_inputs = [
        usable,
        measuring["eval_fraction"],
        batching["batch_size"],
        batching["grad_accum"],
        schedule["epochs"],
        schedule["max_steps"],
    ]
    quiet = {"api_visibility": "private", "show_progress": "hidden"}
    checked.success(warn_small_data, warning_inputs, data_warning, **quiet)
    gr.on([c.change for c in warning_inputs[1:]], warn_small_data, warning_inputs, data_warning, **quiet)
    plan_inputs = [
        method,
        lora_r,
        targets,
        virtual_tokens,
        batching["batch_size"],
        max_length,
        checkpointing,
        lora["lora_dropout"],
        blocks,
    ]
    gr.on(
        [
            method.change,
            lora_r.release,
            targets.change,
            virtual_tokens.release,
            batching["batch_size"].change,
            max_length.change,
            checkpointing.change,
            lora["lora_dropout"].release,
            blocks.change,
            demo.load,
        ],
        update_plan,
        plan_inputs,
        [plan_text, plan_table],
        api_name="finetune_plan",
    )
    # `.input`, not `.change`: a preset sets the method and its own rate, which the method's default must not overwrite
    method.input(
        lambda m: (*method_panels(m), finetune.default_learning_rate(m)),
        method,
        [lora_group, virtual_tokens, blocks, learning_rate],
        api_visibility="private",
    )
    preset_outputs = [
        method,
        lora_group,
        virtual_tokens,
        blocks,
        learning_rate,
        schedule["max_steps"],
        eval_samples,
        name,
    ]
    preset.input(load_preset, preset, preset_outputs, api_visibility="private")
    on_submit(
        start, start_job, [upload, sample], panel.job, form="ft-settings", settings=settings, api_name="start_finetune"
    )
    jobs_panel.loads_capsules(panel, settings)
    gr.on(
        [panel.job.change, panel.timer.tick],
        results,
        panel.job,
        [result_text, result_table, result_samples],
        api_visibility="private",
        show_progress="hidden",
    )
    jobs_panel.when_succeeded(panel, new_adapter, [], [shared.adapter, adapter_pick])
    merge_button.click(merge_adapter, adapter_pick, merge_result, api_name="merge_adapter")
    zip_button.click(download_adapter, adapter_pick, zip_file, api_name="download_adapter")
    return {"finetune_preset": preset_outputs, "finetune_preset_pick": preset, "finetune_upload": upload}
