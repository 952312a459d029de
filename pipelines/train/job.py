"""The one skeleton of every training job; each job supplies only what differs.

Fine-tuning, the reward model, DPO, RLOO and classifiers all run the same story: plan the
phases, refuse a name that is taken, resolve the base model and the hardware, read the data,
seed, load the model and build a trl/transformers trainer, measure before, train, measure after,
check that every rank of a distributed run holds the same weights, then — on rank 0 only — save
into a staging directory, write `meta.json` and publish in one rename. Written once here, the
order cannot drift between jobs (it did: one job measured after the agreement check, one wrote
no device into its metadata), and a job reads as what makes it different.

A job is a `TrainingJob` subclass: `prepare_data` and `prepare_model` (which calls
`build_trainer`) are required; the measurement, save and metadata hooks have defaults.
`HeldOutJob` adds the before/after measurement on held-out data that the reward model, DPO and
classifiers share.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from pipelines.config import get_settings
from pipelines.engine.hardware import TrainPrecision
from pipelines.errors import InvalidParameter
from pipelines.store.jobs import JobCancelled, JobContext, Phase, trainer_callback
from pipelines.train import training


def refuse_taken(target: Path, noun: str, name: str, overwrite: bool) -> None:
    """A result of that name exists and replacing it was not asked for: say so before any work."""
    if target.exists() and not overwrite:
        article = "an" if noun[0] in "aeiou" else "a"
        raise InvalidParameter(
            "out", f"{article} {noun} named {name!r} already exists; choose another name or allow replacing it"
        )


@dataclass(frozen=True)
class Base:
    """The model a job starts from, and where and how it trains."""

    model_id: str  # as asked (a Hub id or path; PLAYGROUND_MODEL by default)
    source: str  # what transformers loads (a local directory for the bundled model)
    name: str  # what people read
    device: str
    precision: TrainPrecision


class TrainingJob:
    """The skeleton (`run`); subclasses fill in the hooks below it."""

    kind: str  # meta.json's "kind"
    noun = "adapter"  # in messages: "adapter saved to …"
    result_key = "adapter_dir"  # the result's path, by that key
    staging_name = "adapter"  # the directory under the job's own

    def __init__(self, spec: Any, ctx: JobContext) -> None:
        self.spec, self.ctx = spec, ctx
        self.started = time.time()
        self.trainer: Any = None
        self.tokenizer: Any = None
        self.planned = 0  # optimizer steps the train phase expects
        self.train_result: Any = None

    # --- the skeleton ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        ctx, spec = self.ctx, self.spec
        ctx.plan(*self.phases())
        ctx.phase("prepare")
        refuse_taken(self.target(), self.noun, spec.out, spec.overwrite)
        self.base = self.resolve_base()
        self.prepare_data()
        ctx.check()
        torch.manual_seed(spec.seed)
        self.prepare_model()
        ctx.check()
        self.measure_before()
        ctx.phase("train", total=self.planned)
        self.train_result = self.trainer.train()
        if ctx.should_stop():
            raise JobCancelled()
        self.measure_after()
        agreement = training.ranks_agree(self.trained_model())  # every rank, before rank 0 alone goes on
        steps = int(self.trainer.state.global_step)
        if not ctx.report:
            return {"steps": steps}
        staging = ctx.directory / self.staging_name
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self.save(staging)
        self.measure_saved(staging)
        meta = self.metadata(time.time() - self.started)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2, default=float), encoding="utf-8")
        target = training.publish(staging, self.target(), overwrite=spec.overwrite)
        ctx.info(f"{self.noun} saved to {target}{self.saved_note(target)}")
        later = self.published(target)
        seconds = later.pop("seconds", meta["seconds"])
        return {self.result_key: str(target), "steps": steps, "seconds": seconds, **self.result(), **later, **agreement}

    def resolve_base(self) -> Base:
        from pipelines.engine import models

        settings = get_settings()
        model_id = self.spec.base_model or models.configured_model_id(settings)
        source, name = models.resolve_source(model_id, settings)
        device, precision = training.device_and_precision(settings)
        return Base(model_id, source, name, device, precision)

    def build_trainer(
        self,
        trainer_class: Callable[..., Any],
        config_class: Callable[..., Any],
        *,
        planned: int,
        has_eval: bool,
        arguments: dict[str, Any] | None = None,
        **trainer_kwargs: Any,
    ) -> Any:
        """The job's trainer with the arguments every job shares (`training.trainer_arguments`) plus its
        own, reporting to the job, without raw metric dicts on the console."""
        args = training.trainer_arguments(
            self.spec,
            self.ctx.directory / "trainer",
            device=self.base.device,
            precision=self.base.precision,
            planned_steps=planned,
            has_eval=has_eval,
            **(arguments or {}),
        )
        self.trainer = trainer_class(
            args=config_class(**args), callbacks=[trainer_callback(self.ctx)], **trainer_kwargs
        )
        training.console_quiet(self.trainer)
        self.planned = planned
        return self.trainer

    def metadata(self, seconds: float) -> dict[str, Any]:
        """meta.json: what every result records, then the job's own fields."""
        return {
            "kind": self.kind,
            "base_model": self.base.name,
            "base_model_source": self.base.model_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "job_id": self.ctx.job_id,
            **self.meta(),
            "hyperparameters": {
                **self.spec.to_dict(),
                "precision": self.base.precision.reason,
                "device": self.base.device,
                **self.hyperparameters(),
            },
            "seconds": seconds,
        }

    # --- what each job supplies --------------------------------------------------------------------

    def phases(self) -> Sequence[Phase]:
        raise NotImplementedError

    def target(self) -> Path:
        """Where the published result goes."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Read and check the data (before the seed is set and anything heavy loads)."""
        raise NotImplementedError

    def prepare_model(self) -> None:
        """Load the model and tokenizer and call `build_trainer`."""
        raise NotImplementedError

    def measure_before(self) -> None:
        """Measurements before training (every rank: `trainer.evaluate` is collective)."""

    def measure_after(self) -> None:
        """Measurements after training that every rank takes part in."""

    def trained_model(self) -> Any:
        return self.trainer.model

    def save(self, staging: Path) -> None:
        self.trainer.model.save_pretrained(staging)
        self.tokenizer.save_pretrained(staging)

    def measure_saved(self, staging: Path) -> None:
        """Rank 0's measurements of the saved result, before it is published."""

    def meta(self) -> dict[str, Any]:
        """The job's own meta.json fields (data, metrics, …)."""
        return {}

    def hyperparameters(self) -> dict[str, Any]:
        """Settings to record beyond the spec's own fields."""
        return {}

    def saved_note(self, target: Path) -> str:
        return ""

    def published(self, target: Path) -> dict[str, Any]:
        """Work after publishing (the result is already usable); what it adds to the job's result."""
        return {}

    def result(self) -> dict[str, Any]:
        """The job's result beyond its path, steps, seconds and the ranks' agreement."""
        return {}


class HeldOutJob(TrainingJob):
    """A job measured on held-out data before and after training (`trainer.evaluate`)."""

    measured: ClassVar[str]  # what the phases say is measured
    data_name: ClassVar[str] = "pairs"
    unit: ClassVar[str] = "pairs"
    before_prefix: ClassVar[str] = "eval"

    held_out = 0  # examples the trainer evaluates on (0: nothing is measured)

    def phases(self) -> Sequence[Phase]:
        return training.before_after_phases(self.measured, data=self.data_name, unit=self.unit)

    def measure_before(self) -> None:
        self.ctx.phase("before", total=self.held_out)
        self.before = (
            training.evaluate_before_training(self.trainer, metric_key_prefix=self.before_prefix)
            if self.held_out
            else {}
        )

    def measure_after(self) -> None:
        self.ctx.phase("after", total=self.held_out)
        self.after = self.trainer.evaluate() if self.held_out else {}
