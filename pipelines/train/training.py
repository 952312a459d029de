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
from typing import Any

from pipelines import knobs
from pipelines.config import Settings, get_settings
from pipelines.engine import adapters, bundled
from pipelines.engine.hardware import TrainPrecision, detect, plan_device, train_precision
from pipelines.errors import InvalidParameter, PlaygroundError
from pipelines.knobs import knob
from pipelines.store.jobs import Phase


def check_output_name(name: str, param: str = "out") -> None:
    try:
        adapters.check_name(name)
    except adapters.AdapterError as error:
        raise InvalidParameter(param, str(error)) from error
    if bundled.reserved(name):
        raise InvalidParameter(param, f"{name!r} is the name of a bundled result (read-only); choose another name")


# The linear layer types of a Llama-style block: LoRA's targets when the model's own are not read yet.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --- the settings every training spec shares, defined once (each spec picks its defaults) ------------


def out_knob(where: str, label: str = "Name") -> Any:
    return knob(help=f"name of the result, saved under <data>/{where}/NAME", label=label, metavar="NAME")


def base_model_knob() -> Any:
    return knob(
        None,
        help="Hub id or local path of the base model (default: PLAYGROUND_MODEL, the model the app serves)",
        metavar="MODEL",
        ui="the app trains the model it serves (PLAYGROUND_MODEL); another base is for the command line",
    )


def epochs_knob(value: float) -> Any:
    return knob(
        value,
        help="passes over the training data",
        label="Epochs",
        low=0,
        high=100,
        low_open=True,
        step=0.1,
        slider=False,
    )


def max_steps_knob(value: int = -1) -> Any:
    """-1 (the default) means "train for the epochs"; a spec without epochs (RLOO) gives a step count."""
    by_epochs = value == -1
    return knob(
        value,
        help="optimizer steps; overrides epochs" if by_epochs else "optimizer steps",
        label="Max steps",
        low=1,
        high=100_000,
        special={-1: "use epochs"} if by_epochs else {},
        step=1,
        slider=False,
    )


def learning_rate_knob(
    value: float | None, help: str = "peak learning rate (cosine schedule)", info: str | None = None
) -> Any:
    return knob(value, help=help, info=info, label="Learning rate", low=0, high=1, low_open=True, flag="--lr")


def batch_size_knob(value: int = 8) -> Any:
    return knob(
        value, help="examples per optimizer step and device", label="Batch size", low=1, high=512, step=1, slider=False
    )


def max_length_knob(value: int = 512) -> Any:
    return knob(
        value,
        help="longest example in tokens (longer ones are cut)",
        label="Max length (tokens)",
        low=16,
        high=32_768,
        step=1,
        slider=False,
    )


def lora_r_knob(value: int) -> Any:
    return knob(value, help="rank of the LoRA update matrices", label="LoRA rank r", low=1, high=256, step=1)


def lora_alpha_knob(value: int) -> Any:
    return knob(
        value, help="LoRA scale: the update is multiplied by alpha / r", label="LoRA alpha", low=1, high=1024, step=1
    )


def eval_fraction_knob(value: float, unit: str) -> Any:
    return knob(
        value,
        help=f"share of {unit} held out of training to measure on",
        label="Held-out share",
        low=0,
        high=1,
        high_open=True,
        step=0.05,
    )


def seed_knob() -> Any:
    return knob(
        42, help="same seed + settings + data = same run", label="Seed", low=0, high=2**32 - 1, step=1, slider=False
    )


def skip_bad_rows_knob() -> Any:
    return knob(
        False,
        help="train without the rows that have problems instead of refusing the file",
        label="Skip rows with problems",
    )


def overwrite_knob() -> Any:
    return knob(
        False, help="replace an existing result of the same name", info="same name", label="Replace if it exists"
    )


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


def trainer_arguments(
    spec: Any,
    output_dir: Path,
    *,
    device: str,
    precision: TrainPrecision,
    planned_steps: int,
    has_eval: bool,
    **overrides: Any,
) -> dict[str, Any]:
    """What every job passes to its trl config (SFTConfig, RewardConfig, DPOConfig, RLOOConfig).

    trl's defaults are changed where they hurt here: precision from the hardware (trl defaults
    to bf16, ~40x slower on CPUs that emulate it), no gradient checkpointing (it recomputes every
    activation, which a small model does not need), no checkpoints or progress bars (the job
    publishes once and reports its own progress), and evaluation during training only on longer
    runs (each job measures before and after anyway). `overrides` are the job's own.
    """
    arguments: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": getattr(spec, "epochs", 1.0),
        "max_steps": spec.max_steps,
        "per_device_train_batch_size": getattr(spec, "batch_size", 8),
        "per_device_eval_batch_size": getattr(spec, "batch_size", 8),
        "learning_rate": spec.learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": max(0, planned_steps // 20),
        "gradient_checkpointing": False,
        "bf16": precision.bf16,
        "fp16": precision.fp16,
        "use_cpu": device == "cpu",
        "seed": spec.seed,
        "logging_steps": max(1, planned_steps // 40),
        "eval_strategy": "steps" if has_eval and planned_steps >= 12 else "no",
        "eval_steps": max(3, planned_steps // 4),
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    if hasattr(spec, "max_length"):
        arguments["max_length"] = spec.max_length
    return arguments | overrides


def before_after_phases(measured: str, *, data: str = "pairs", unit: str = "pairs") -> tuple[Phase, ...]:
    """The phases of a job that measures held-out data before and after training (reward model, DPO,
    classifier)."""
    return (
        Phase("prepare", f"Prepare: {data}, base model, tokenisation"),
        Phase("before", f"Measure before training: {measured}", unit=unit),
        Phase("train", "Train", unit="steps"),
        Phase("after", f"Measure after training: {measured}", unit=unit),
    )


def load_tokenizer(source: str | Path) -> Any:
    """The tokenizer of a model to train or score, with a pad token (the end-of-text one when it has
    none): batches of different lengths need one, and every trainer here pads."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def classifier_lora(r: int, alpha: int) -> Any:
    """LoRA on every linear layer of a classifier's body, its new head trained in full (reward models,
    classifiers)."""
    from peft import LoraConfig

    return LoraConfig(
        task_type="SEQ_CLS",
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(DEFAULT_TARGETS),
        modules_to_save=["score"],
    )


def console_quiet(trainer: Any) -> None:
    """No raw metric dicts on the console: the job callback logs readable lines instead.

    With progress bars off (as every job runs), transformers adds a PrinterCallback that prints
    each log dict; in a background job that lands in the log people read.
    """
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


# Where launchers put the process count: torchrun / `accelerate launch --multi_gpu`, then MPI's.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def check_distributed_launch(environ: Any = None) -> None:
    """Refuse, before anything loads, a distributed launch that would not do what it says.

    - `accelerate launch --cpu --num_processes N` without MPI starts ONE process (accelerate's
      multi-CPU launcher is mpirun): training would quietly run on one process.
    - FSDP and DeepSpeed ZeRO-3 leave each rank a shard of the weights, while rank 0 evaluates and
      saves the model it holds (whole under DDP and ZeRO stages 1-2, which shard optimizer state
      and gradients only): it would publish a fragment.
    """
    import json

    environ = os.environ if environ is None else environ

    def on(name: str) -> bool:
        return environ.get(name, "").lower() in ("1", "true")

    asked_for_many = "MASTER_PORT" in environ and on("ACCELERATE_USE_CPU")
    if asked_for_many and not any(name in environ for name in _WORLD_SIZE_VARIABLES):
        raise InvalidParameter(
            "accelerate launch",
            "--cpu with several processes starts only one without MPI (accelerate's multi-CPU launcher is "
            "mpirun); for several CPU processes use `accelerate launch --multi_gpu --num_processes N` (on a "
            "machine without GPUs its processes train on CPU over gloo) or `torchrun --nproc_per_node N -m pipelines …`",
        )
    stage = environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    config_file = environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if stage is None and config_file and Path(config_file).is_file():
        try:
            stage = json.loads(Path(config_file).read_text()).get("zero_optimization", {}).get("stage")
        except (OSError, ValueError, AttributeError):
            stage = None
    if on("ACCELERATE_USE_FSDP"):
        chosen = "FSDP"
    elif on("ACCELERATE_USE_DEEPSPEED") and str(stage) == "3":
        chosen = "DeepSpeed ZeRO stage 3"
    else:
        return
    raise InvalidParameter(
        "accelerate config",
        f"{chosen} shards the weights across processes, and this command evaluates and saves rank 0's "
        "copy whole: choose multi-GPU (DDP) or DeepSpeed ZeRO stage 1 or 2 in `accelerate config`",
    )


def evaluate_before_training(trainer: Any, **kwargs: Any) -> dict[str, Any]:
    """`trainer.evaluate()` before `trainer.train()`, safe under DDP.

    Evaluating first makes accelerate prepare the model for evaluation only and mark it prepared;
    `train()` then never wraps it in DistributedDataParallel, so no gradient is averaged and each
    rank trains alone on its shard (seen here: a 2-process reward model whose ranks ended apart).
    Forgetting that evaluation-only preparation lets `train()` wrap the model as it should.
    """
    metrics = dict(trainer.evaluate(**kwargs))
    model = trainer.model
    if getattr(model, "_is_accelerate_prepared", False) and trainer.model_wrapped is model:
        model._is_accelerate_prepared = False
        trainer.accelerator._models[:] = [m for m in trainer.accelerator._models if m is not model]
    return metrics


class RanksDisagree(PlaygroundError, RuntimeError):
    """The processes of a distributed run ended with different weights: nothing is published."""


def trained_weights(model: Any) -> dict[str, Any]:
    """What a job trained, by name: an adapter's saved tensors (its `save_pretrained` writes
    exactly these), or a whole model's trainable parameters."""
    from peft import PeftModel, get_peft_model_state_dict

    if isinstance(model, PeftModel):
        return get_peft_model_state_dict(model)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _tensor_digest(name: str, tensor: Any) -> str:
    import hashlib

    import torch

    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _tensor_digests(tensors: dict[str, Any]) -> dict[str, str]:
    return {name: _tensor_digest(name, tensors[name]) for name in sorted(tensors)}


def _combined(digests: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256("".join(digests[name] for name in sorted(digests)).encode()).hexdigest()


def weights_digest(tensors: dict[str, Any]) -> str:
    """SHA-256 over tensors' names, dtypes, shapes and bytes: equal digests, bit-identical weights."""
    return _combined(_tensor_digests(tensors))


def ranks_agree(model: Any) -> dict[str, Any]:
    """After training, every rank of a distributed run must hold the same weights: DDP averages
    gradients, so identical updates follow. Checked rather than assumed — each rank's per-tensor
    digests are gathered (a collective: every rank calls this) — because rank 0 alone publishes.
    `world_size`, `ranks_agree` and the digest go into the job's result and the CLI's JSON."""
    import torch.distributed as dist

    mine = _tensor_digests(trained_weights(model))
    everyone: list[Any] = [mine]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
    differing = sorted(name for name in mine if len({str(ranks.get(name)) for ranks in everyone}) > 1)
    if differing or any(set(ranks) != set(mine) for ranks in everyone):
        shown = ", ".join(differing[:3]) + (f" and {len(differing) - 3} more" if len(differing) > 3 else "")
        raise RanksDisagree(
            f"the {len(everyone)} processes ended with different weights ({shown or 'different tensors'}); "
            "nothing was saved"
        )
    return {"world_size": len(everyone), "ranks_agree": True, "weights_sha256": _combined(mine)}


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

    out: str = out_knob("reward_models or adapters")
    data: str | None = knob(
        None, help="preference pairs in trl's format (prompt, chosen, rejected)", label="Pairs file", metavar="FILE"
    )
    from_store: bool = knob(False, help="train on the labels collected in the app", label="Pairs")
    base_model: str | None = base_model_knob()
    epochs: float = epochs_knob(2.0)
    max_steps: int = max_steps_knob()
    learning_rate: float = learning_rate_knob(3e-4)
    batch_size: int = batch_size_knob()
    max_length: int = max_length_knob()
    lora_r: int = lora_r_knob(16)
    lora_alpha: int = lora_alpha_knob(32)
    eval_fraction: float = eval_fraction_knob(0.2, "prompts")
    seed: int = seed_knob()
    skip_bad_rows: bool = skip_bad_rows_knob()
    overwrite: bool = overwrite_knob()

    def __post_init__(self) -> None:
        knobs.check(self)
        check_output_name(self.out)
        if bool(self.data) == bool(self.from_store):
            raise InvalidParameter("data", "give either a data file or from_store, not both or neither")
