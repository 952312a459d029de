"""Training a reward model: a job that fits the Bradley-Terry loss with trl's RewardTrainer.

The model is the base model with a one-output classification head; LoRA adapts the body and the
head is trained in full (`modules_to_save`). Pairs are split by prompt (`reward.split_by_prompt`),
and accuracy and margin on the held-out pairs are measured before and after training. Scoring a
trained model lives in `pipelines.train.reward`, which this module's result is read by.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from pipelines.train import training
from pipelines.config import get_settings
from pipelines.store.jobs import JobCancelled, JobContext, trainer_callback
from pipelines.engine.sampling import InvalidParameter


from pipelines.train.reward import RewardSpec, load_classifier, load_pairs, model_path, split_by_prompt


def run(spec: RewardSpec, ctx: JobContext) -> dict[str, Any]:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from pipelines.engine import models

    started = time.time()
    ctx.plan(*training.before_after_phases("held-out accuracy and margin"))
    ctx.phase("prepare")
    settings = get_settings()
    target = model_path(spec.out)
    if target.exists() and not spec.overwrite:
        raise InvalidParameter("out", f"a reward model named {spec.out!r} already exists")
    model_id = spec.base_model or models.configured_model_id(settings)
    source, base_name = models.resolve_source(model_id, settings)
    device, precision = training.device_and_precision(settings)
    tokenizer = training.load_tokenizer(source)

    rows, errors = load_pairs(spec)
    train_rows, eval_rows = split_by_prompt(rows, spec.eval_fraction, spec.seed)
    ctx.info(
        f"{len(rows)} preference pairs ({len(errors)} bad rows skipped); split by prompt: {len(train_rows)} train, "
        f"{len(eval_rows)} held-out pairs on unseen prompts; base model {base_name} on {device} ({precision.reason})"
    )
    ctx.check()
    torch.manual_seed(spec.seed)
    model = load_classifier(source, tokenizer).to(device)
    peft_config = training.classifier_lora(spec.lora_r, spec.lora_alpha)
    planned = training.planned_steps(len(train_rows), spec.batch_size, 1, spec.epochs, spec.max_steps)
    args = RewardConfig(
        **training.trainer_arguments(
            spec,
            ctx.directory / "trainer",
            device=device,
            precision=precision,
            planned_steps=planned,
            has_eval=bool(eval_rows),
        )
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[trainer_callback(ctx)],
    )
    training.console_quiet(trainer)
    kept_train = len(trainer.train_dataset)
    kept_eval = len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0
    ctx.info(
        f"after preprocessing: {kept_train} train / {kept_eval} held-out pairs "
        f"({len(train_rows) - kept_train + len(eval_rows) - kept_eval} dropped as longer than {spec.max_length} tokens)"
    )
    # trl logs its reward metrics as eval_* whatever the prefix: read the untrained accuracy now
    ctx.phase("before", total=kept_eval)
    before = training.evaluate_before_training(trainer) if kept_eval else {}
    ctx.phase("train", total=planned)
    result = trainer.train()
    if ctx.should_stop():
        raise JobCancelled()
    ctx.phase("after", total=kept_eval)
    after = trainer.evaluate() if kept_eval else {}
    metrics = {
        "eval_accuracy": after.get("eval_accuracy"),
        "eval_margin": after.get("eval_margin"),
        "eval_loss": after.get("eval_loss"),
        "eval_accuracy_before": before.get("eval_accuracy"),
        "train_loss": float(result.training_loss),
    }
    ctx.info("held-out: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    agreement = training.ranks_agree(trainer.model)  # every rank, before rank 0 alone goes on
    if not ctx.report:
        return {"steps": int(trainer.state.global_step)}

    staging = ctx.directory / "reward_model"
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    seconds = time.time() - started
    info = {
        "kind": "reward",
        "base_model": base_name,
        "base_model_source": model_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "job_id": ctx.job_id,
        "data": {
            "source": "store" if spec.from_store else Path(spec.data or "").name,
            "pairs": len(rows),
            "bad_rows": len(errors),
            "train_pairs": kept_train,
            "eval_pairs": kept_eval,
            "split": "by prompt",
        },
        "hyperparameters": {**spec.to_dict(), "precision": precision.reason, "device": device},
        "metrics": metrics,
        "seconds": seconds,
    }
    (staging / "meta.json").write_text(json.dumps(info, indent=2, default=float), encoding="utf-8")
    training.publish(staging, target, overwrite=spec.overwrite)
    ctx.info(f"reward model saved to {target}")
    return {
        "model_dir": str(target),
        "eval_accuracy": metrics["eval_accuracy"],
        "steps": int(trainer.state.global_step),
        "seconds": seconds,
        **metrics,
        **agreement,
    }


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "reward")."""
    return run(RewardSpec.from_dict(ctx.spec), ctx)
