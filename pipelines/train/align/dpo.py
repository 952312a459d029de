"""Direct preference optimisation: the policy learns from preference pairs, no reward model, no sampling.

DPO (Rafailov et al., 2023) minimises -log sigma(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) -
(log pi(y_l|x) - log pi_ref(y_l|x))]): the *implicit reward* beta * log(pi / pi_ref) of the chosen
response must beat the rejected one's. The reference is the base model itself -- the LoRA adapter
switched off -- so no second copy of the model is held. Pairs are split by prompt, and the
implicit reward margin and accuracy on held-out pairs are measured before (zero: the adapter
starts as the identity) and after training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines.train import reward, training
from pipelines.knobs import knob
from pipelines.store.jobs import JobCancelled, JobContext, trainer_callback
from pipelines.train.align import common

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust", "apo_zero", "sigmoid_norm")


@dataclass
class DPOSpec(training.PairSpec):
    out: str = training.out_knob("adapters", "Adapter name")
    epochs: float = training.epochs_knob(1.0)
    # LoRA needs a higher rate than full-model DPO (usually 5e-7 to 5e-6)
    learning_rate: float = training.learning_rate_knob(1e-4)
    beta: float = knob(
        0.1,
        help="strength of the pull toward the reference (the base model)",
        label="β",
        low=0,
        high=10,
        low_open=True,
        step=0.01,
        slider=False,
    )
    loss_type: str = knob("sigmoid", help="trl's DPO loss variant", label="Loss", choices=LOSS_TYPES)


def _held_out(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "eval_rewards/margins": "margin",
        "eval_rewards/accuracies": "accuracy",
        "eval_loss": "loss",
        "eval_rewards/chosen": "reward_chosen",
        "eval_rewards/rejected": "reward_rejected",
    }
    return {short: float(metrics[key]) for key, short in keys.items() if key in metrics}


def run(spec: DPOSpec, ctx: JobContext) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    started = time.time()
    ctx.plan(*training.before_after_phases("implicit reward margin and accuracy"))
    ctx.phase("prepare")
    common.check_new_adapter(spec.out, spec.overwrite)
    model_id, source, base_name = common.base_source(spec.base_model)
    device, precision = training.device_and_precision()
    rows, errors = reward.load_pairs(spec)  # same pairs, same checks as the reward model
    train_rows, eval_rows = reward.split_by_prompt(rows, spec.eval_fraction, spec.seed)
    ctx.info(
        f"{len(rows)} pairs ({len(errors)} bad rows skipped): {len(train_rows)} train, {len(eval_rows)} held-out on unseen "
        f"prompts; base {base_name} on {device} ({precision.reason}); beta={spec.beta}, loss={spec.loss_type}"
    )
    ctx.check()
    torch.manual_seed(spec.seed)
    model, tokenizer = common.load_policy(source, device)
    planned = training.planned_steps(len(train_rows), spec.batch_size, 1, spec.epochs, spec.max_steps)
    args = DPOConfig(
        **training.trainer_arguments(
            spec,
            ctx.directory / "trainer",
            device=device,
            precision=precision,
            planned_steps=planned,
            has_eval=bool(eval_rows),
            beta=spec.beta,
            loss_type=[spec.loss_type],
        )
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=common.lora_config(spec.lora_r, spec.lora_alpha),
        callbacks=[trainer_callback(ctx)],
    )
    training.console_quiet(trainer)
    ctx.phase("before", total=len(eval_rows))
    before = _held_out(training.evaluate_before_training(trainer)) if eval_rows else {}
    ctx.phase("train", total=planned)
    result = trainer.train()
    if ctx.should_stop():
        raise JobCancelled()
    ctx.phase("after", total=len(eval_rows))
    after = _held_out(trainer.evaluate()) if eval_rows else {}
    ctx.info(
        f"held-out implicit reward margin {before.get('margin', 0):+.4f} -> {after.get('margin', 0):+.4f}, "
        f"accuracy {before.get('accuracy', 0):.2f} -> {after.get('accuracy', 0):.2f}"
    )
    steps = int(trainer.state.global_step)
    agreement = training.ranks_agree(trainer.model)  # every rank, before rank 0 alone goes on
    if not ctx.report:
        return {"steps": steps}
    metrics = {"before": before, "after": after, "train_loss": float(result.training_loss)}
    target = common.publish_adapter(
        trainer,
        tokenizer,
        ctx,
        spec.out,
        spec.overwrite,
        {
            "kind": "dpo",
            "base_model": base_name,
            "base_model_source": model_id,
            "data": {
                "source": "store" if spec.from_store else Path(spec.data or "").name,
                "pairs": len(rows),
                "train_pairs": len(train_rows),
                "eval_pairs": len(eval_rows),
                "split": "by prompt",
            },
            "hyperparameters": {**spec.to_dict(), "precision": precision.reason, "device": device},
            "metrics": metrics,
            "seconds": time.time() - started,
        },
    )
    return {
        "adapter_dir": str(target),
        "steps": steps,
        "eval_margin_before": before.get("margin"),
        "eval_margin_after": after.get("margin"),
        "eval_accuracy_after": after.get("accuracy"),
        "train_loss": float(result.training_loss),
        "seconds": time.time() - started,
        **agreement,
    }


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "dpo")."""
    return run(DPOSpec.from_dict(ctx.spec), ctx)
