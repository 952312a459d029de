"""What every training job shares: spec checks, step planning, hardware choice, atomic publish.

Fine-tuning, reward modelling, DPO and RLOO specs differ in their own knobs but not in these,
so they live here once.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from . import adapters
from .config import Settings, get_settings
from .hardware import TrainPrecision, detect, plan_device, train_precision
from .jobs import Phase
from .sampling import InvalidParameter


def check_output_name(name: str, param: str = "out") -> None:
    try:
        adapters.check_name(name)
    except adapters.AdapterError as error:
        raise InvalidParameter(param, str(error)) from error


def common_checks(spec: Any) -> list[tuple[str, bool, str]]:
    """Range checks for the fields most specs share (only those the spec has)."""
    rules = {
        "epochs": (lambda v: 0 < v <= 100, "must be in (0, 100]"),
        "max_steps": (lambda v: v == -1 or 1 <= v <= 100_000, "must be -1 (use epochs) or 1-100000"),
        "batch_size": (lambda v: 1 <= v <= 512, "must be between 1 and 512"),
        "grad_accum": (lambda v: 1 <= v <= 512, "must be between 1 and 512"),
        "max_length": (lambda v: 16 <= v <= 32_768, "must be between 16 and 32768"),
        "eval_fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
        "lora_r": (lambda v: 1 <= v <= 256, "must be between 1 and 256"),
        "lora_alpha": (lambda v: 0 < v <= 1024, "must be between 1 and 1024"),
    }
    return [
        (name, rule(getattr(spec, name)), message) for name, (rule, message) in rules.items() if hasattr(spec, name)
    ]


def raise_failed(checks: Iterable[tuple[str, bool, str]], spec: Any) -> None:
    for name, ok, message in checks:
        if not ok:
            raise InvalidParameter(name, f"{message}, got {getattr(spec, name)}")


def planned_steps(examples: int, batch_size: int, grad_accum: int, epochs: float, max_steps: int) -> int:
    """Optimizer steps a run will take (max_steps wins when set)."""
    if max_steps > 0:
        return max_steps
    per_epoch = max(1, -(-examples // (batch_size * grad_accum)))
    return max(1, int(per_epoch * epochs + 0.999))


def device_and_precision(settings: Settings | None = None) -> tuple[str, TrainPrecision]:
    """Where training runs and in which precision: PLAYGROUND_DEVICE and PLAYGROUND_TRAIN_PRECISION on this hardware."""
    settings = settings or get_settings()
    hardware = detect()
    device = plan_device(hardware, settings.device).device
    try:
        return device, train_precision(hardware, device, settings.train_precision)
    except ValueError as error:
        raise InvalidParameter("PLAYGROUND_TRAIN_PRECISION", str(error)) from error


def pair_job_phases(measured: str) -> tuple[Phase, ...]:
    """The phases of a job that measures held-out pairs before and after training (reward model, DPO)."""
    return (
        Phase("prepare", "Prepare: pairs, base model, tokenisation"),
        Phase("before", f"Measure before training: {measured}", unit="pairs"),
        Phase("train", "Train", unit="steps"),
        Phase("after", f"Measure after training: {measured}", unit="pairs"),
    )


def console_quiet(trainer: Any) -> None:
    """No raw metric dicts on the console: the job callback logs readable lines instead.

    With progress bars off (as every job runs), transformers adds a PrinterCallback that prints
    each log dict; in a background job that lands in the log people read.
    """
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def publish(staging: Path, target: Path, *, overwrite: bool, param: str = "out") -> Path:
    """Move a finished model directory into place in one rename (readers never see half of it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if target.exists():
        if not overwrite:
            raise InvalidParameter(param, f"{target.name!r} already exists; choose another name or allow replacing it")
        trash = target.parent / f".trash-{target.name}-{time.time_ns()}"
        os.replace(target, trash)
    os.replace(staging, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    return target


class SpecDict:
    """to_dict/from_dict for job specs, which travel as JSON; keys a newer or older spec lacks are ignored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # noqa: ANN206
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class PairSpec(SpecDict):
    """What every job trained on preference pairs takes: the reward model and DPO."""

    out: str
    data: str | None = None
    from_store: bool = False
    base_model: str | None = None
    epochs: float = 2.0
    max_steps: int = -1
    learning_rate: float = 3e-4
    batch_size: int = 8
    max_length: int = 512
    lora_r: int = 16
    lora_alpha: int = 32
    eval_fraction: float = 0.2
    seed: int = 42
    skip_bad_rows: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        check_output_name(self.out)
        if bool(self.data) == bool(self.from_store):
            raise InvalidParameter("data", "give either a data file or from_store, not both or neither")
        raise_failed(
            [
                *common_checks(self),
                ("learning_rate", 0 < self.learning_rate <= 1, "must be in (0, 1]"),
                *self.extra_checks(),
            ],
            self,
        )

    def extra_checks(self) -> list[tuple[str, bool, str]]:
        return []
