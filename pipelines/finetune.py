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
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from . import adapters, evaluation, generation, model_structure, sft_data, training
from .config import get_settings
from .hardware import TrainPrecision
from .jobs import JobCancelled, JobContext, Phase, trainer_callback
from .sampling import InvalidParameter, SamplingParams

METHODS = ("lora", "prompt-tuning")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PROMPT_TUNING_INIT = "Answer the question helpfully, in the style of the examples."
# Bytes per parameter for full fine-tuning with Adam in fp32, as usually quoted: weights 4,
# Adam moments 8, gradients 4, activations ~8 (activations really scale with batch x length).
BYTES_FULL = {"weights": 4, "adam": 8, "gradients": 4, "activations": 8}
SAMPLE_BATCH = 4  # held-out answers generated per batch in the before/after comparison


@dataclass
class FinetuneSpec:
    """Everything a fine-tuning run needs; validated so a bad value fails before any work."""

    data: str
    out: str
    method: str = "lora"
    base_model: str | None = None
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    num_virtual_tokens: int = 20
    learning_rate: float | None = None  # None: 5e-4 for LoRA, 3e-2 for prompt tuning
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    gradient_checkpointing: bool = False
    seed: int = 42
    eval_fraction: float = 0.1
    skip_bad_rows: bool = False
    qlora: bool = False
    group_by_length: bool = True
    eval_samples: int = 8
    eval_max_new_tokens: int = 64
    overwrite: bool = False

    def __post_init__(self) -> None:
        training.check_output_name(self.out)
        if self.method not in METHODS:
            raise InvalidParameter("method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        training.raise_failed(
            [
                *training.common_checks(self),
                ("lora_dropout", 0 <= self.lora_dropout < 1, "must be in [0, 1)"),
                ("num_virtual_tokens", 1 <= self.num_virtual_tokens <= 200, "must be between 1 and 200"),
                ("eval_samples", 0 <= self.eval_samples <= 200, "must be between 0 and 200"),
            ],
            self,
        )
        if self.learning_rate is not None and not 0 < self.learning_rate <= 1:
            raise InvalidParameter("learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        if self.method == "lora" and not self.target_modules:
            raise InvalidParameter("target_modules", "choose at least one layer type for LoRA")
        if self.qlora:
            available, reason = qlora_available()
            if not available:
                raise InvalidParameter("qlora", reason)
            if self.method != "lora":
                raise InvalidParameter("qlora", "QLoRA is a LoRA method")

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        # Small models on ~100 examples learn a style within a few epochs at 5e-4; 2e-4 (the usual
        # choice for 7B models) leaves most answers unchanged after 3 epochs of the bundled sample.
        return 5e-4 if self.method == "lora" else 3e-2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
    rows: list[dict[str, Any]]  # the memory table

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / max(self.total_params, 1)


def plan(
    model: Any, method: str, *, lora_r: int, target_modules: Sequence[str], num_virtual_tokens: int
) -> TrainingPlan:
    """Trainable parameters and the memory each method would need, for this model.

    LoRA adds B (out x r) and A (r x in) beside each targeted W (out x in): r*(in+out) trainable
    parameters instead of in*out. Prompt tuning trains only num_virtual_tokens x hidden.
    """
    total = model_structure.parameter_count(model)
    if method == "lora":
        targets = set(target_modules)
        trainable = sum(
            lora_r * (m.in_features + m.out_features)
            for name, m in model_structure.linear_layers(model)
            if name.rsplit(".", 1)[-1] in targets
        )
    else:
        trainable = num_virtual_tokens * model.get_input_embeddings().weight.shape[1]
    rows = [
        {
            "method": "Full fine-tuning (fp32 + Adam)",
            "weights": total * BYTES_FULL["weights"],
            "optimizer": total * BYTES_FULL["adam"],
            "gradients": total * BYTES_FULL["gradients"],
            "activations": total * BYTES_FULL["activations"],
        },
        {
            "method": f"LoRA r={lora_r} (frozen fp32 base)" if method == "lora" else "Prompt tuning (frozen fp32 base)",
            "weights": total * 4 + trainable * 4,
            "optimizer": trainable * 8,
            "gradients": trainable * 4,
            "activations": trainable * 8,
        },
        {
            "method": "QLoRA (4-bit base + LoRA)",
            "weights": total // 2 + trainable * 4,
            "optimizer": trainable * 8,
            "gradients": trainable * 4,
            "activations": trainable * 8,
        },
    ]
    for row in rows:
        row["total"] = row["weights"] + row["optimizer"] + row["gradients"] + row["activations"]
    return TrainingPlan(total_params=total, trainable_params=trainable, rows=rows)


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


def target_dir(name: str) -> Path:
    return adapters.adapter_path(name)


def check_can_write(spec: FinetuneSpec) -> None:
    if target_dir(spec.out).exists() and not spec.overwrite:
        raise InvalidParameter(
            "out", f"an adapter named {spec.out!r} already exists; choose another name or allow replacing it"
        )


def _samples(
    handle: Any,
    conversations: Sequence[Sequence[Any]],
    spec: FinetuneSpec,
    adapter: str | None,
    done: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers to the held-out prompts, four per batch; `done(n)` after each batch."""
    from .chat import render

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

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if not spec.qlora:
        model.to(device)
    return model


def evaluation_units(eval_conversations: int, spec: FinetuneSpec) -> int:
    """Units of work of the before/after evaluation, per model: loss, forgetting probe, answers."""
    return (1 if eval_conversations else 0) + 1 + min(spec.eval_samples, eval_conversations)


def evaluation_note(eval_conversations: int, spec: FinetuneSpec) -> str:
    """What the evaluation will do, in words: its cost is the answers it generates."""
    answers = min(spec.eval_samples, eval_conversations)
    parts = [f"loss on {eval_conversations} held-out conversations"] if eval_conversations else []
    parts.append("perplexity on general text")
    if answers:
        parts.append(f"{answers} answers of up to {spec.eval_max_new_tokens} tokens")
    return ", ".join(parts) + ", for the base model and then the tuned one"


def run(spec: FinetuneSpec, ctx: JobContext) -> dict[str, Any]:
    """Prepare, train, then measure the base model and the tuned one on the same held-out data.

    Both measurements come after training: the adapter switched off is exactly the base model,
    and measuring then means the trainer has already prepared its model (mixed precision
    wraps its forward), which PEFT's prompt-tuning `disable_adapter` would otherwise break
    under bf16/fp16 by swapping the forward while accelerate rebinds it.
    """
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from . import models

    started = time.time()
    ctx.plan(
        Phase("prepare", "Prepare: data, base model, tokenisation"),
        Phase("train", "Train", unit="steps"),
        Phase("evaluate", "Evaluate: base model vs tuned", unit="parts"),
    )
    ctx.phase("prepare")
    settings = get_settings()
    check_can_write(spec)
    model_id = spec.base_model or models.configured_model_id(settings)
    source, base_name = models.resolve_source(model_id, settings)
    device, precision = training.device_and_precision(settings)
    ctx.info(f"base model {base_name} on {device}; precision: {precision.reason}")

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = sft_data.load_file(spec.data)
    problems = data.problems + sft_data.check_lengths(data, tokenizer, spec.max_length)
    conversations = sft_data.accept(data, problems, skip_bad_rows=spec.skip_bad_rows)
    train_conv, eval_conv = sft_data.split(conversations, spec.eval_fraction, spec.seed)
    train_ds = Dataset.from_list(sft_data.to_examples(train_conv))
    eval_ds = Dataset.from_list(sft_data.to_examples(eval_conv)) if eval_conv else None
    skipped = len({p.row for p in problems})
    ctx.info(
        f"data: {data.summary()}; training on {len(train_conv)} conversations ({len(train_ds)} examples), "
        f"evaluating on {len(eval_conv)}" + (f"; skipped {skipped} bad rows" if skipped else "")
    )
    ctx.check()

    torch.manual_seed(spec.seed)
    model = _load_base(source, device, spec)
    peft_config = peft_config_for(spec, source)
    planned_steps = training.planned_steps(len(train_ds), spec.batch_size, spec.grad_accum, spec.epochs, spec.max_steps)
    args = training_args(
        spec,
        ctx.directory / "trainer",
        device=device,
        planned_steps=planned_steps,
        has_eval=eval_ds is not None,
        precision=precision,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[trainer_callback(ctx)],
    )
    training.console_quiet(trainer)
    peft_model = trainer.model
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    ctx.info(
        f"{len(trainer.train_dataset)} training examples after tokenisation; {trainable:,} trainable parameters "
        f"of {total:,} ({100 * trainable / total:.2f}%); ~{planned_steps} steps"
    )
    ctx.check()

    ctx.phase("train", total=planned_steps)
    train_result = trainer.train()
    if ctx.should_stop():
        raise JobCancelled()

    sample_conv = eval_conv[: spec.eval_samples]
    references = [c[-1].content for c in sample_conv]
    units = evaluation_units(len(eval_conv), spec)
    ctx.phase("evaluate", total=2 * units, note=evaluation_note(len(eval_conv), spec))
    progress = _Counter(ctx)
    handle = models.wrap(peft_model.get_base_model(), tokenizer, name=base_name, source=source)
    # trainer.evaluate() is collective under distributed training: every rank calls it. The rest
    # (samples, perplexity on general text, saving) is local work for rank 0 only.
    main = ctx.report
    peft_model.eval()
    before: dict[str, Any] = {}
    with peft_model.disable_adapter():
        if eval_ds is not None:
            before["loss"] = trainer.evaluate(metric_key_prefix="before")["before_loss"]
            progress.add(1)
        if main:
            before["general_perplexity"] = evaluation.text_perplexity(peft_model, tokenizer, evaluation.general_text())
            progress.add(1)
        before_outputs = _samples(handle, sample_conv, spec, None, progress.add) if sample_conv and main else []
    before.update(evaluation.text_metrics(before_outputs, references) if before_outputs else {})
    before["perplexity"] = evaluation.perplexity_of(before.get("loss"))
    ctx.info("base model: " + _fmt(before))
    ctx.check()

    after: dict[str, Any] = {}
    if eval_ds is not None:
        after["loss"] = trainer.evaluate(metric_key_prefix="after")["after_loss"]
        progress.add(1)
    if not main:
        return {"steps": int(trainer.state.global_step)}

    staging = ctx.directory / "adapter"
    shutil.rmtree(staging, ignore_errors=True)
    peft_model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    peft_model.eval()
    after["general_perplexity"] = evaluation.text_perplexity(peft_model, tokenizer, evaluation.general_text())
    progress.add(1)
    if spec.method == "lora":
        after_outputs = _samples(handle, sample_conv, spec, None, progress.add) if sample_conv else []
    else:
        handle.register_adapter("__trained__", staging)
        after_outputs = _samples(handle, sample_conv, spec, "__trained__", progress.add) if sample_conv else []
    after.update(evaluation.text_metrics(after_outputs, references) if sample_conv else {})
    after["perplexity"] = evaluation.perplexity_of(after.get("loss"))
    ctx.info("tuned model: " + _fmt(after))

    samples = [
        {"prompt": c[-2].content if len(c) > 1 else "", "reference": ref, "before": b, "after": a}
        for c, ref, b, a in zip(sample_conv, references, before_outputs, after_outputs)
    ]
    seconds = time.time() - started
    meta = {
        "kind": "lora" if spec.method == "lora" else "prompt-tuning",
        "base_model": base_name,
        "base_model_source": model_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "job_id": ctx.job_id,
        "data": {
            "file": Path(spec.data).name,
            "format": data.format,
            "rows": data.total_rows,
            "skipped_rows": skipped,
            "train_conversations": len(train_conv),
            "eval_conversations": len(eval_conv),
            "train_examples": len(trainer.train_dataset),
        },
        "hyperparameters": {
            **spec.to_dict(),
            "learning_rate": spec.lr,
            "precision": precision.reason,
            "device": device,
        },
        "trainable_params": trainable,
        "metrics": {"before": before, "after": after, "train_loss": train_result.training_loss},
        "samples": samples,
        "seconds": seconds,
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2, default=float), encoding="utf-8")
    target = training.publish(staging, target_dir(spec.out), overwrite=spec.overwrite)
    ctx.info(f"adapter saved to {target}")
    return {
        "adapter_dir": str(target),
        "train_loss": float(train_result.training_loss),
        "eval_loss": after.get("loss"),
        "steps": int(trainer.state.global_step),
        "seconds": seconds,
        "before": before,
        "after": after,
        "samples": samples,
    }


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


def training_args(
    spec: FinetuneSpec, output_dir: Path, *, device: str, planned_steps: int, has_eval: bool, precision: TrainPrecision
) -> Any:
    """The project's SFTConfig: trl's defaults changed where they hurt on this hardware.

    - precision from the hardware (trl defaults to bf16, ~40x slower on CPUs that emulate it);
    - gradient checkpointing only if asked (trl's default recomputes every activation);
    - length-grouped batches, padded per batch, so short examples do not pay for long ones.
    """
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accum,
        learning_rate=spec.lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(0, planned_steps // 20),
        max_length=spec.max_length,
        gradient_checkpointing=spec.gradient_checkpointing,
        bf16=precision.bf16,
        fp16=precision.fp16,
        use_cpu=device == "cpu",
        seed=spec.seed,
        logging_steps=max(1, planned_steps // 40),
        # Evaluate during training only on longer runs; the job measures before and after anyway.
        eval_strategy="steps" if has_eval and planned_steps >= 12 else "no",
        eval_steps=max(3, planned_steps // 4),
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if spec.group_by_length else "random",
        dataloader_num_workers=0,
    )


def _fmt(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)) and v == v)


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "finetune")."""
    return run(FinetuneSpec.from_dict(ctx.spec), ctx)
