"""Training a reward model: a job that fits the Bradley-Terry loss with trl's RewardTrainer.

The model is the base model with a one-output classification head; LoRA adapts the body and the
head is trained in full (`modules_to_save`). Pairs are split by prompt (`reward.split_by_prompt`),
and accuracy and margin on the held-out pairs are measured before and after training. Scoring a
trained model lives in `pipelines.train.reward`, which this module's result is read by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pipelines.store.jobs import JobContext
from pipelines.train import training
from pipelines.train.job import HeldOutJob
from pipelines.train.reward import RewardSpec, load_classifier, load_pairs, model_path, split_by_prompt


class RewardJob(HeldOutJob):
    kind = "reward"
    noun = "reward model"
    result_key = "model_dir"
    staging_name = "reward_model"
    measured: ClassVar[str] = "held-out accuracy and margin"  # trl logs them as eval_* whatever the prefix

    def target(self) -> Path:
        return model_path(self.spec.out)

    def prepare_data(self) -> None:
        spec = self.spec
        self.tokenizer = training.load_tokenizer(self.base.source)
        self.rows, self.errors = load_pairs(spec)
        self.train_rows, self.eval_rows = split_by_prompt(self.rows, spec.eval_fraction, spec.seed)
        self.ctx.info(
            f"{len(self.rows)} preference pairs ({len(self.errors)} bad rows skipped); split by prompt: "
            f"{len(self.train_rows)} train, {len(self.eval_rows)} held-out pairs on unseen prompts; base model "
            f"{self.base.name} on {self.base.device} ({self.base.precision.reason})"
        )

    def prepare_model(self) -> None:
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        spec = self.spec
        trainer = self.build_trainer(
            RewardTrainer,
            RewardConfig,
            planned=training.planned_steps(len(self.train_rows), spec.batch_size, 1, spec.epochs, spec.max_steps),
            has_eval=bool(self.eval_rows),
            model=load_classifier(self.base.source, self.tokenizer).to(self.base.device),
            train_dataset=Dataset.from_list(self.train_rows),
            eval_dataset=Dataset.from_list(self.eval_rows) if self.eval_rows else None,
            processing_class=self.tokenizer,
            peft_config=training.classifier_lora(spec.lora_r, spec.lora_alpha),
        )
        self.kept_train = len(trainer.train_dataset)
        self.held_out = len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0
        dropped = len(self.train_rows) - self.kept_train + len(self.eval_rows) - self.held_out
        self.ctx.info(
            f"after preprocessing: {self.kept_train} train / {self.held_out} held-out pairs "
            f"({dropped} dropped as longer than {spec.max_length} tokens)"
        )

    def measure_after(self) -> None:
        super().measure_after()
        self.metrics = {
            "eval_accuracy": self.after.get("eval_accuracy"),
            "eval_margin": self.after.get("eval_margin"),
            "eval_loss": self.after.get("eval_loss"),
            "eval_accuracy_before": self.before.get("eval_accuracy"),
            "train_loss": float(self.train_result.training_loss),
        }
        self.ctx.info("held-out: " + ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items() if isinstance(v, float)))

    def meta(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "data": {
                "source": "store" if spec.from_store else Path(spec.data or "").name,
                "pairs": len(self.rows),
                "bad_rows": len(self.errors),
                "train_pairs": self.kept_train,
                "eval_pairs": self.held_out,
                "split": "by prompt",
            },
            "metrics": self.metrics,
        }

    def result(self) -> dict[str, Any]:
        return dict(self.metrics)


def run(spec: RewardSpec, ctx: JobContext) -> dict[str, Any]:
    return RewardJob(spec, ctx).run()


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "reward")."""
    return run(RewardSpec.from_dict(ctx.spec), ctx)
