"""Supervised fine-tuning with LoRA (or prompt tuning): the spec, the plan, and the job.

Training is trl's `SFTTrainer` with a peft config -- no hand-written loop. The data become
conversational prompt/completion pairs, so the loss falls on the assistant's tokens only.
Batches are padded dynamically and grouped by length so short examples do not pay for long
ones. Precision comes from the hardware (never bf16 autocast on a CPU that emulates it), and
gradient checkpointing is off unless asked for: it trades ~30% more compute for memory a
135M model does not need.

The job measures the model before and after on the held-out split (loss, perplexity, ROUGE-L,
BLEU, sample outputs) plus perplexity on general text (forgetting), then publishes the adapter
to `<data>/adapters/<name>/` atomically, with a meta.json describing how it was made.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from pipelines import knobs
from pipelines.config import get_settings
from pipelines.engine import adapters, generation, model_structure
from pipelines.engine.hardware import TrainPrecision
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.store.jobs import JobContext, Phase
from pipelines.train import evaluation, memory_plan, sft_data, training
from pipelines.train.job import TrainingJob
from pipelines.train.training import DEFAULT_TARGETS

METHODS = ("lora", "prompt-tuning", "full", "selective")
WHOLE_MODEL_METHODS = ("full", "selective")  # these save a model directory, not an adapter
PROMPT_TUNING_INIT = "Answer the question helpfully, in the style of the examples."
SAMPLE_BATCH = 4  # held-out answers generated per batch in the before/after comparison


@dataclass
class FinetuneSpec:
    """Everything a fine-tuning run needs; validated so a bad value fails before any work."""

    data: str = knob(help="JSONL, CSV or Parquet: prompt/response, Alpaca or messages", label="Data", metavar="FILE")
    out: str = knob(
        help="name of the result, saved under <data>/adapters/NAME (a whole model, from full or selective "
        "fine-tuning: <data>/models-tuned/NAME)",
        label="Adapter name",
        info="the result's name; a whole model from full or selective fine-tuning",
        metavar="NAME",
    )
    method: str = knob(
        "lora",
        help="what is trained: LoRA matrices, a learned prompt, every weight (full), or chosen blocks (selective)",
        label="Method",
        choices=METHODS,
    )
    train_blocks: list[int] = knob(
        default_factory=list,
        help="selective fine-tuning: the decoder blocks that train, 0-based (e.g. 27,28,29: the last three of 30)",
        label="Blocks that train",
        metavar="N[,N...]",
    )
    base_model: str | None = training.base_model_knob()
    lora_r: int = training.lora_r_knob(8)
    lora_alpha: int = training.lora_alpha_knob(16)
    lora_dropout: float = knob(
        0.05, help="dropout on the LoRA input", label="LoRA dropout", low=0, high=1, high_open=True, step=0.01
    )
    target_modules: list[str] = knob(
        default_factory=lambda: list(DEFAULT_TARGETS),
        help="layer types LoRA adapts (default: every linear layer type)",
        label="Target layers",
        metavar="NAME",
    )
    num_virtual_tokens: int = knob(
        20,
        help="prompt tuning: number of learned tokens",
        label="Virtual tokens (prompt tuning)",
        low=1,
        high=200,
        step=1,
        flag="--virtual-tokens",
    )
    learning_rate: float | None = training.learning_rate_knob(
        None,
        "peak learning rate; default 5e-4 (LoRA), 3e-2 (prompt tuning), 5e-5 (full, selective)",
        info="peak; set from the method",
    )
    epochs: float = training.epochs_knob(3.0)
    max_steps: int = training.max_steps_knob()
    batch_size: int = training.batch_size_knob()
    grad_accum: int = knob(
        1,
        help="batches summed before each optimizer step",
        label="Gradient accumulation",
        low=1,
        high=512,
        step=1,
        slider=False,
    )
    max_length: int = training.max_length_knob()
    gradient_checkpointing: bool = knob(
        False,
        help="recompute activations in the backward pass: saves memory, costs ~30% time",
        label="Gradient checkpointing",
    )
    seed: int = training.seed_knob()
    eval_fraction: float = training.eval_fraction_knob(0.1, "conversations")
    skip_bad_rows: bool = training.skip_bad_rows_knob()
    qlora: bool = knob(False, help="4-bit base model (needs CUDA + bitsandbytes)", label="QLoRA (4-bit base)")
    group_by_length: bool = knob(
        True, help="batch examples of similar length together (less padding)", label="Group batches by length"
    )
    eval_samples: int = knob(
        8,
        help="held-out answers generated by the base and the tuned model after training; 0 = none",
        label="Answers compared",
        low=0,
        high=200,
        step=1,
    )
    eval_max_new_tokens: int = knob(
        64,
        help="longest held-out answer generated in the comparison",
        label="Tokens per compared answer",
        low=1,
        high=1024,
        step=1,
    )
    overwrite: bool = training.overwrite_knob()

    def __post_init__(self) -> None:
        knobs.check(self)
        training.check_output_name(self.out)
        if self.method == "lora" and not self.target_modules:
            raise InvalidParameter("target_modules", "choose at least one layer type for LoRA")
        self.train_blocks = parse_blocks(self.train_blocks)
        if self.method == "selective" and not self.train_blocks:
            raise InvalidParameter("train_blocks", "choose at least one block for selective fine-tuning")
        if self.qlora:
            available, reason = qlora_available()
            if not available:
                raise InvalidParameter("qlora", reason)
            if self.method != "lora":
                raise InvalidParameter("qlora", "QLoRA is a LoRA method")

    @property
    def saves_model(self) -> bool:
        return self.method in WHOLE_MODEL_METHODS

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else default_learning_rate(self.method)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Settings that make one lesson visible on the bundled sample (the rest stay the form's). Measured on
# the bundled model, 30 steps of batch 8: full fine-tuning at 1e-3 took the general-text perplexity
# from 17.4 to 50.6 (catastrophic forgetting) while LoRA at its default rate moved it to 16.3, with
# a better held-out loss (1.73 vs 1.83); docs/tabs.md "Forgetting, made visible" has the runs.
PRESETS: dict[str, dict[str, Any]] = {
    "Forgetting demo 1/2: full fine-tuning at a high rate (1e-3, 30 steps)": {
        "method": "full",
        "learning_rate": 1e-3,
        "max_steps": 30,
        "eval_samples": 4,
        "out": "forgetting-full",
    },
    "Forgetting demo 2/2: the same data with LoRA (5e-4, 30 steps)": {
        "method": "lora",
        "learning_rate": 5e-4,
        "max_steps": 30,
        "eval_samples": 4,
        "out": "forgetting-lora",
    },
    "Prompt tuning: 20 virtual tokens only (3e-2, 30 steps)": {
        "method": "prompt-tuning",
        "learning_rate": 3e-2,
        "max_steps": 30,
        "eval_samples": 4,
        "out": "prompt-tuning",
    },
    "Selective: the ticked blocks only (the last two by default; 5e-5, 30 steps)": {
        "method": "selective",
        "learning_rate": 5e-5,
        "max_steps": 30,
        "eval_samples": 4,
        "out": "last-two-blocks",
    },
}


def parse_blocks(values: Any) -> list[int]:
    """Block indices from a list of numbers or of texts like "27,28,29" (the CLI and the UI give both)."""
    if values is None:
        return []
    items = values if isinstance(values, (list, tuple)) else [values]
    blocks: set[int] = set()
    for item in items:
        for part in str(item).replace(" ", ",").split(","):
            if not part:
                continue
            try:
                number = int(part)
            except ValueError:
                raise InvalidParameter("train_blocks", f"must be block numbers like 27,28,29, got {part!r}") from None
            if number < 0:
                raise InvalidParameter("train_blocks", f"block numbers start at 0, got {number}")
            blocks.add(number)
    return sorted(blocks)


def default_learning_rate(method: str) -> float:
    """The rate a run takes when none is given.

    Small models on ~100 examples learn a style within a few epochs at 5e-4; 2e-4 (the usual
    choice for 7B models) leaves most answers unchanged after 3 epochs of the bundled sample.
    Prompt tuning trains a few thousand parameters and needs a far higher rate. Full and
    selective fine-tuning move the pretrained weights themselves: 5e-5, the usual full-SFT rate
    for small models (higher rates are how the forgetting demo damages the model on purpose).
    """
    return {"lora": 5e-4, "prompt-tuning": 3e-2}.get(method, 5e-5)


def qlora_available() -> tuple[bool, str]:
    """QLoRA needs a CUDA GPU and bitsandbytes; say which is missing."""
    if not torch.cuda.is_available():
        return False, "QLoRA (4-bit) needs a CUDA GPU; this machine has none"
    if importlib.util.find_spec("bitsandbytes") is None:
        return False, "QLoRA needs the bitsandbytes package (pip install bitsandbytes)"
    return True, "available"


# --- the plan shown before training -------------------------------------------------------------


def linear_module_names(model: Any) -> list[str]:
    """Names of the linear layer types LoRA can target (the output head excluded), adapters or not."""
    return model_structure.linear_layer_types(model, DEFAULT_TARGETS)


@dataclass
class TrainingPlan:
    total_params: int
    trainable_params: int
    rows: list[dict[str, Any]]  # the memory table: one row per method, bytes at the peak of a step

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / max(self.total_params, 1)


SMALL_DATA_EXAMPLES = 50  # fewer training examples than this: a run learns them, not the task
MANY_PASSES = 8  # each example seen more often than this: memorised (training loss near 0, held-out loss rising)


def small_data_warning(
    examples: int,
    *,
    eval_fraction: float,
    batch_size: int,
    grad_accum: int,
    epochs: float,
    max_steps: int,
) -> str | None:
    """Why a run on this much data may memorise rather than learn (LLaMA-Factory and others warn before a
    run too: 12 rows x 60 steps is each row seen 40 times); None when it looks fine."""
    if examples <= 0:
        return None
    train = max(1, round(examples * (1 - eval_fraction)))
    per_step = max(1, batch_size * grad_accum)
    steps = max_steps if max_steps > 0 else math.ceil(train / per_step) * max(epochs, 0)
    passes = steps * per_step / train
    reasons = []
    if train < SMALL_DATA_EXAMPLES:
        reasons.append(f"only {train} training example{'s' if train != 1 else ''}")
    if passes > MANY_PASSES:
        reasons.append(f"each one seen about {passes:.0f} times ({steps:,} steps of {per_step})")
    if not reasons:
        return None
    return (
        f"{' and '.join(reasons).capitalize()}: the model will likely memorise them -- training loss near 0, "
        "held-out loss rising, answers copied from the data. More rows, fewer steps or epochs, or a lower rate "
        "make it learn the task instead."
    )


def lora_trainable(model: Any, lora_r: int, target_modules: Sequence[str]) -> int:
    """LoRA adds B (out x r) and A (r x in) beside each targeted W (out x in): r*(in+out) trainable
    parameters instead of in*out."""
    targets = set(target_modules)
    return sum(
        lora_r * (m.in_features + m.out_features)
        for name, m in model_structure.linear_layers(model)
        if name.rsplit(".", 1)[-1] in targets
    )


def plan(
    model: Any,
    method: str,
    step: memory_plan.Step = memory_plan.Step(),
    *,
    lora_r: int,
    target_modules: Sequence[str],
    num_virtual_tokens: int,
    lora_dropout: float = 0.05,
    train_blocks: Sequence[int] = (),
) -> TrainingPlan:
    """Trainable parameters of the chosen method, and the peak memory of one training `step` of
    every method (pipelines/train/memory_plan.py: the worst case, every example `step.length` tokens long)."""
    shape = memory_plan.ModelShape.of(model)
    total = model_structure.parameter_count(model)
    lora = lora_trainable(model, lora_r, target_modules)
    prompt = num_virtual_tokens * model.get_input_embeddings().weight.shape[1]
    common: dict[str, Any] = {"step": step}
    lora_options: dict[str, Any] = {
        "lora_targets": tuple(target_modules),
        "lora_r": lora_r,
        "lora_dropout": lora_dropout,
    }
    plans = [
        (memory_plan.estimate(shape, "full", trainable=total, **common), "Full fine-tuning"),
        (memory_plan.estimate(shape, "lora", trainable=lora, **common, **lora_options), f"LoRA r={lora_r}"),
        (
            memory_plan.estimate(shape, "prompt-tuning", trainable=prompt, virtual_tokens=num_virtual_tokens, **common),
            f"Prompt tuning ({num_virtual_tokens} tokens)",
        ),
        (
            memory_plan.estimate(shape, "lora", trainable=lora, base="nf4", **common, **lora_options),
            f"QLoRA r={lora_r} (NF4)",
        ),
    ]
    layers = model_structure.decoder_blocks(model)
    blocks = [b for b in train_blocks if b < len(layers)]
    # read as the blocks were before any adapter was injected (using one in the app adds LoRA weights to them)
    selective = sum(model_structure.parameter_count(layers[b]) for b in blocks)
    if blocks:
        shown = ",".join(map(str, blocks)) if len(blocks) <= 4 else f"{len(blocks)} blocks"
        plans.insert(
            1,
            (
                memory_plan.estimate(shape, "selective", trainable=selective, train_blocks=blocks, **common),
                f"Selective (blocks {shown})",
            ),
        )
    rows = []
    for estimate, label in plans:
        row = estimate.row()
        row["method"] = label
        rows.append(row)
    chosen = {"lora": lora, "prompt-tuning": prompt, "full": total, "selective": selective}[method]
    return TrainingPlan(total_params=total, trainable_params=chosen, rows=rows)


def loss_mask_example(tokenizer: Any, conversation: Sequence[Any]) -> list[tuple[str, bool]]:
    """(token text, carries loss) for one example, exactly as trl masks prompt/completion data."""
    example = sft_data.to_examples([conversation])[-1]
    prompt_ids = tokenizer.apply_chat_template(
        example["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full_ids = tokenizer.apply_chat_template(
        example["prompt"] + example["completion"], tokenize=True, return_dict=False
    )
    if hasattr(prompt_ids, "keys"):
        prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
    return [(tokenizer.decode([t]), i >= len(prompt_ids)) for i, t in enumerate(full_ids)]


# --- the job ------------------------------------------------------------------------------------


def target_dir(name: str, saves_model: bool = False) -> Path:
    """Adapters go where every picker lists them; whole models (full or selective fine-tuning)
    beside them under `<data>/models-tuned/`, each a directory PLAYGROUND_MODEL can load."""
    if saves_model:
        return get_settings().data_dir / "models-tuned" / adapters.check_name(name)
    return adapters.adapter_path(name)


def check_can_write(spec: FinetuneSpec) -> None:
    if target_dir(spec.out, spec.saves_model).exists() and not spec.overwrite:
        what = "a model" if spec.saves_model else "an adapter"
        raise InvalidParameter(
            "out", f"{what} named {spec.out!r} already exists; choose another name or allow replacing it"
        )


def freeze_except_blocks(model: Any, blocks: Sequence[int]) -> None:
    """Selective fine-tuning: only the chosen decoder blocks train."""
    layers = model_structure.decoder_blocks(model)
    wrong = [b for b in blocks if b >= len(layers)]
    if wrong:
        raise InvalidParameter(
            "train_blocks", f"this model has blocks 0-{len(layers) - 1}; there is no block {wrong[0]}"
        )
    for parameter in model.parameters():
        parameter.requires_grad = False
    for b in blocks:
        for parameter in layers[b].parameters():
            parameter.requires_grad = True


def _samples(
    handle: Any,
    conversations: Sequence[Sequence[Any]],
    spec: FinetuneSpec,
    adapter: str | None,
    done: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers to the held-out prompts, four per batch; `done(n)` after each batch."""
    from pipelines.engine.chat import render

    prompts = [render(handle, list(c[:-1]))[1] for c in conversations]
    params = [SamplingParams(temperature=0, max_new_tokens=spec.eval_max_new_tokens)] * len(prompts)
    outputs: list[str] = []
    for start in range(0, len(prompts), SAMPLE_BATCH):
        rows = generation.generate_batch(
            handle, prompts[start : start + SAMPLE_BATCH], params[start : start + SAMPLE_BATCH], adapter=adapter
        )
        outputs.extend(r.text.strip() for r in rows)
        if done:
            done(len(rows))
    return outputs


def _load_base(source: str, device: str, spec: FinetuneSpec) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if spec.qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(  # as the QLoRA paper, and the memory plan's NF4 row
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if not spec.qlora:
        model.to(device)
    return model


def evaluation_units(eval_conversations: int, spec: FinetuneSpec) -> int:
    """Units of work of the before/after evaluation, per model: loss, forgetting probe, answers."""
    return (1 if eval_conversations else 0) + 1 + min(spec.eval_samples, eval_conversations)


def evaluation_note(
    eval_conversations: int, spec: FinetuneSpec, models_measured: str = "for the base model and then the tuned one"
) -> str:
    """What the evaluation will do, in words: its cost is the answers it generates."""
    answers = min(spec.eval_samples, eval_conversations)
    parts = [f"loss on {eval_conversations} held-out conversations"] if eval_conversations else []
    parts.append("perplexity on general text")
    if answers:
        parts.append(f"{answers} answer{'s' if answers != 1 else ''} of up to {spec.eval_max_new_tokens} tokens")
    return ", ".join(parts) + ", " + models_measured


class FinetuneJob(TrainingJob):
    """Prepare, train, then measure the base model and the tuned one on the same held-out data.

    For adapters both measurements come after training: the adapter switched off is exactly the
    base model, and measuring then means the trainer has already prepared its model (mixed
    precision wraps its forward), which PEFT's prompt-tuning `disable_adapter` would otherwise
    break under bf16/fp16 by swapping the forward while accelerate rebinds it. Full and selective
    fine-tuning change the base weights themselves, so their base is measured before training.
    `trainer.evaluate()` is collective under distributed training (every rank calls it); the rest
    (answers, perplexity on general text) is rank 0's alone.
    """

    kind = "lora"  # meta.json says the method (lora, prompt-tuning, full, selective)

    def __init__(self, spec: FinetuneSpec, ctx: JobContext) -> None:
        super().__init__(spec, ctx)
        self.kind = spec.method
        if spec.saves_model:
            self.noun, self.result_key, self.staging_name = "model", "model_dir", "model"

    def phases(self) -> Sequence[Phase]:
        saves_model = self.spec.saves_model  # a whole model's weights change in training: its base is measured first
        return (
            Phase("prepare", "Prepare: data, base model, tokenisation"),
            *([Phase("evaluate-base", "Evaluate: base model", unit="parts")] if saves_model else []),
            Phase("train", "Train", unit="steps"),
            Phase(
                "evaluate", "Evaluate: tuned model" if saves_model else "Evaluate: base model vs tuned", unit="parts"
            ),
        )

    def target(self) -> Path:
        return target_dir(self.spec.out, self.spec.saves_model)

    def prepare_data(self) -> None:
        from datasets import Dataset

        spec, ctx = self.spec, self.ctx
        ctx.info(f"base model {self.base.name} on {self.base.device}; precision: {self.base.precision.reason}")
        self.tokenizer = training.load_tokenizer(self.base.source)
        self.data = data = sft_data.load_file(spec.data)
        problems = data.problems + sft_data.check_lengths(data, self.tokenizer, spec.max_length)
        conversations = sft_data.accept(data, problems, skip_bad_rows=spec.skip_bad_rows)
        self.train_conv, self.eval_conv = sft_data.split(conversations, spec.eval_fraction, spec.seed)
        self.skipped = len({p.row for p in problems})
        self.train_ds = Dataset.from_list(sft_data.to_examples(self.train_conv))
        self.eval_ds = Dataset.from_list(sft_data.to_examples(self.eval_conv)) if self.eval_conv else None
        ctx.info(
            f"data: {data.summary()}; training on {len(self.train_conv)} conversations ({len(self.train_ds)} examples), "
            f"evaluating on {len(self.eval_conv)}" + (f"; skipped {self.skipped} bad rows" if self.skipped else "")
        )

    def prepare_model(self) -> None:
        from trl import SFTConfig, SFTTrainer

        from pipelines.engine import models

        spec, base = self.spec, self.base
        train_ds = self.train_ds
        model = _load_base(base.source, base.device, spec)
        if spec.method == "selective":
            freeze_except_blocks(model, spec.train_blocks)
        planned = training.planned_steps(len(train_ds), spec.batch_size, spec.grad_accum, spec.epochs, spec.max_steps)
        trainer = self.build_trainer(
            SFTTrainer,
            SFTConfig,
            planned=planned,
            has_eval=bool(self.eval_conv),
            arguments=sft_arguments(spec),
            model=model,
            train_dataset=train_ds,
            eval_dataset=self.eval_ds,
            processing_class=self.tokenizer,
            peft_config=None if spec.saves_model else peft_config_for(spec, base.source),
        )
        self.tuned = tuned = trainer.model
        self.trainable = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
        total = model_structure.parameter_count(tuned)  # the base model's, as the plan counts it (adapters beside it)
        self.ctx.info(
            f"{len(trainer.train_dataset)} training examples after tokenisation; {self.trainable:,} trainable "
            f"parameters, {100 * self.trainable / total:.2f}% of the base model's {total:,}; ~{planned} steps"
        )
        self.sample_conv = self.eval_conv[: spec.eval_samples]
        self.references = [c[-1].content for c in self.sample_conv]
        self.units = evaluation_units(len(self.eval_conv), spec)
        base_model = tuned if spec.saves_model else tuned.get_base_model()
        self.handle = models.wrap(base_model, self.tokenizer, name=base.name, source=base.source)

    def _measure_base(self, progress: _Counter) -> None:
        before: dict[str, Any] = {}
        if self.eval_conv:
            before["loss"] = training.evaluate_before_training(self.trainer, metric_key_prefix="before")["before_loss"]
            progress.add(1)
        main = self.ctx.report
        if main:
            before["general_perplexity"] = evaluation.text_perplexity(
                self.tuned, self.tokenizer, evaluation.general_text()
            )
            progress.add(1)
        outputs = (
            _samples(self.handle, self.sample_conv, self.spec, None, progress.add) if self.sample_conv and main else []
        )
        before.update(evaluation.text_metrics(outputs, self.references) if outputs else {})
        before["perplexity"] = evaluation.perplexity_of(before.get("loss"))
        self.ctx.info("base model: " + _fmt(before))
        self.before, self.before_outputs = before, outputs

    def measure_before(self) -> None:
        if self.spec.saves_model:
            n = len(self.eval_conv)
            self.ctx.phase("evaluate-base", total=self.units, note=evaluation_note(n, self.spec, "for the base model"))
            self.tuned.eval()
            self._measure_base(_Counter(self.ctx))
            self.tuned.train()

    def measure_after(self) -> None:
        spec, ctx, n = self.spec, self.ctx, len(self.eval_conv)
        if spec.saves_model:
            ctx.phase("evaluate", total=self.units, note=evaluation_note(n, spec, "for the tuned model"))
        else:
            ctx.phase("evaluate", total=2 * self.units, note=evaluation_note(n, spec))
        self.progress = _Counter(ctx)
        if not spec.saves_model:
            self.tuned.eval()
            with self.tuned.disable_adapter():
                self._measure_base(self.progress)
        ctx.check()
        self.after: dict[str, Any] = {}
        if self.eval_conv:
            self.after["loss"] = self.trainer.evaluate(metric_key_prefix="after")["after_loss"]
            self.progress.add(1)

    def trained_model(self) -> Any:
        return self.tuned

    def save(self, staging: Path) -> None:
        self.tuned.save_pretrained(staging)
        self.tokenizer.save_pretrained(staging)

    def measure_saved(self, staging: Path) -> None:
        spec, after, progress = self.spec, self.after, self.progress
        self.tuned.eval()
        after["general_perplexity"] = evaluation.text_perplexity(self.tuned, self.tokenizer, evaluation.general_text())
        progress.add(1)
        adapter = None  # LoRA's layers are live in the wrapped model; a whole model is the model
        if spec.method == "prompt-tuning":
            adapter = "__trained__"
            self.handle.register_adapter(adapter, staging)
        outputs = _samples(self.handle, self.sample_conv, spec, adapter, progress.add) if self.sample_conv else []
        after.update(evaluation.text_metrics(outputs, self.references) if self.sample_conv else {})
        after["perplexity"] = evaluation.perplexity_of(after.get("loss"))
        self.ctx.info("tuned model: " + _fmt(after))
        self.samples = [
            {"prompt": c[-2].content if len(c) > 1 else "", "reference": ref, "before": b, "after": a}
            for c, ref, b, a in zip(self.sample_conv, self.references, self.before_outputs, outputs, strict=False)
        ]
        self.size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())

    def meta(self) -> dict[str, Any]:
        return {
            "data": {
                "file": Path(self.spec.data).name,
                "format": self.data.format,
                "rows": self.data.total_rows,
                "skipped_rows": self.skipped,
                "train_conversations": len(self.train_conv),
                "eval_conversations": len(self.eval_conv),
                "train_examples": len(self.trainer.train_dataset),
            },
            "trainable_params": self.trainable,
            "size_bytes": self.size,
            "metrics": {"before": self.before, "after": self.after, "train_loss": self.train_result.training_loss},
            "samples": self.samples,
        }

    def hyperparameters(self) -> dict[str, Any]:
        return {"learning_rate": self.spec.lr}

    def saved_note(self, target: Path) -> str:
        return f" ({self.size / 2**20:,.1f} MiB)"

    def result(self) -> dict[str, Any]:
        return {
            "method": self.spec.method,
            "trainable_params": self.trainable,
            "size_mb": round(self.size / 2**20, 2),
            "train_loss": float(self.train_result.training_loss),
            "eval_loss": self.after.get("loss"),
            "before": self.before,
            "after": self.after,
            "samples": self.samples,
        }


def run(spec: FinetuneSpec, ctx: JobContext) -> dict[str, Any]:
    return FinetuneJob(spec, ctx).run()


class _Counter:
    """Units of the evaluation phase done so far, reported to the job as they complete."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx, self.done = ctx, 0

    def add(self, n: int) -> None:
        self.done += n
        self.ctx.advance(self.done)
        self.ctx.check()


def peft_config_for(spec: FinetuneSpec, source: str) -> Any:
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit

    if spec.method == "lora":
        return LoraConfig(
            r=spec.lora_r,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            target_modules=list(spec.target_modules),
            task_type="CAUSAL_LM",
        )
    return PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=spec.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT,
        prompt_tuning_init_text=PROMPT_TUNING_INIT,
        tokenizer_name_or_path=source,
    )


def sft_arguments(spec: FinetuneSpec) -> dict[str, Any]:
    """What fine-tuning adds to the jobs' shared arguments: gradient checkpointing only if asked, and
    length-grouped batches (padded per batch) so short examples do not pay for long ones."""
    return {
        "gradient_accumulation_steps": spec.grad_accum,
        "learning_rate": spec.lr,
        "gradient_checkpointing": spec.gradient_checkpointing,
        "train_sampling_strategy": "group_by_length" if spec.group_by_length else "random",
    }


def training_args(
    spec: FinetuneSpec, output_dir: Path, *, device: str, planned_steps: int, has_eval: bool, precision: TrainPrecision
) -> Any:
    """The project's SFTConfig, as the job builds it (benchmarks and the memory plan measure with it)."""
    from trl import SFTConfig

    return SFTConfig(
        **training.trainer_arguments(
            spec,
            output_dir,
            device=device,
            precision=precision,
            planned_steps=planned_steps,
            has_eval=has_eval,
            **sft_arguments(spec),
        )
    )


def _fmt(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)) and v == v)


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "finetune")."""
    return run(FinetuneSpec.from_dict(ctx.spec), ctx)
