"""Direct preference optimisation: the policy learns from preference pairs, no reward model, no sampling.

DPO (Rafailov et al., 2023) minimises -log sigma(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) -
(log pi(y_l|x) - log pi_ref(y_l|x))]): the *implicit reward* beta * log(pi / pi_ref) of the chosen
response must beat the rejected one's. The reference is the base model itself -- the LoRA adapter
switched off -- so no second copy of the model is held. Pairs are split by prompt, and the
implicit reward margin and accuracy on held-out pairs are measured before (zero: the adapter
starts as the identity) and after training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipelines.engine import adapters
from pipelines.knobs import knob
from pipelines.store.jobs import JobContext
from pipelines.train import reward, training
from pipelines.train.align import common
from pipelines.train.job import HeldOutJob

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


class DPOJob(HeldOutJob):
    kind = "dpo"
    measured: ClassVar[str] = "implicit reward margin and accuracy"

    def target(self) -> Path:
        return adapters.adapter_path(self.spec.out)

    def prepare_data(self) -> None:
        spec = self.spec
        self.rows, errors = reward.load_pairs(spec)  # same pairs, same checks as the reward model
        self.train_rows, self.eval_rows = reward.split_by_prompt(self.rows, spec.eval_fraction, spec.seed)
        self.held_out = len(self.eval_rows)
        self.ctx.info(
            f"{len(self.rows)} pairs ({len(errors)} bad rows skipped): {len(self.train_rows)} train, {self.held_out} "
            f"held-out on unseen prompts; base {self.base.name} on {self.base.device} ({self.base.precision.reason}); "
            f"beta={spec.beta}, loss={spec.loss_type}"
        )

    def prepare_model(self) -> None:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        spec = self.spec
        model, self.tokenizer = common.load_policy(self.base.source, self.base.device)
        self.build_trainer(
            DPOTrainer,
            DPOConfig,
            planned=training.planned_steps(len(self.train_rows), spec.batch_size, 1, spec.epochs, spec.max_steps),
            has_eval=bool(self.eval_rows),
            arguments={"beta": spec.beta, "loss_type": [spec.loss_type]},
            model=model,
            train_dataset=Dataset.from_list(self.train_rows),
            eval_dataset=Dataset.from_list(self.eval_rows) if self.eval_rows else None,
            processing_class=self.tokenizer,
            peft_config=common.lora_config(spec.lora_r, spec.lora_alpha),
        )

    def measure_before(self) -> None:
        super().measure_before()
        self.before = _held_out(self.before)

    def measure_after(self) -> None:
        super().measure_after()
        self.after = _held_out(self.after)
        before, after = self.before, self.after
        self.ctx.info(
            f"held-out implicit reward margin {before.get('margin', 0):+.4f} -> {after.get('margin', 0):+.4f}, "
            f"accuracy {before.get('accuracy', 0):.2f} -> {after.get('accuracy', 0):.2f}"
        )

    def meta(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "data": {
                "source": "store" if spec.from_store else Path(spec.data or "").name,
                "pairs": len(self.rows),
                "train_pairs": len(self.train_rows),
                "eval_pairs": len(self.eval_rows),
                "split": "by prompt",
            },
            "metrics": {
                "before": self.before,
                "after": self.after,
                "train_loss": float(self.train_result.training_loss),
            },
        }

    def result(self) -> dict[str, Any]:
        return {
            "eval_margin_before": self.before.get("margin"),
            "eval_margin_after": self.after.get("margin"),
            "eval_accuracy_after": self.after.get("accuracy"),
            "train_loss": float(self.train_result.training_loss),
        }


def run(spec: DPOSpec, ctx: JobContext) -> dict[str, Any]:
    return DPOJob(spec, ctx).run()


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "dpo")."""
    return run(DPOSpec.from_dict(ctx.spec), ctx)
