"""What DPO and RLOO share: the policy, LoRA, prompts, publishing the adapter, job metadata."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pipelines.config import get_settings
from pipelines.engine import adapters
from pipelines.engine.chat import Message
from pipelines.engine.sampling import InvalidParameter
from pipelines.labels import preference_data, preferences
from pipelines.store.files import write_atomic
from pipelines.store.jobs import JobContext
from pipelines.train import training
from pipelines.train.training import DEFAULT_TARGETS


def check_new_adapter(name: str, overwrite: bool) -> None:
    if adapters.adapter_path(name).exists() and not overwrite:
        raise InvalidParameter(
            "out", f"an adapter named {name!r} already exists; choose another name or allow replacing it"
        )


def base_source(base_model: str | None) -> tuple[str, str, str]:
    """(model id, local source, display name) of the policy's base model."""
    from pipelines.engine import models

    settings = get_settings()
    model_id = base_model or models.configured_model_id(settings)
    source, name = models.resolve_source(model_id, settings)
    return model_id, source, name


def load_policy(source: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    tokenizer = training.load_tokenizer(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).to(device)
    return model, tokenizer


def lora_config(r: int, alpha: int) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(DEFAULT_TARGETS)
    )


def load_prompts(path: str | None) -> list[list[Message]]:
    """Prompts from a file (a 'prompt' column: text or messages), or every prompt in the store."""
    if path:
        try:
            prompts, _ = preference_data.read_prompts(Path(path))
        except (preferences.PreferenceError, OSError) as error:
            raise InvalidParameter("prompts", str(error)) from error
    else:
        prompts = preferences.stored_prompts()
    prompts = [p for p in prompts if p and p[-1].role == "user"]
    if not prompts:
        raise InvalidParameter("prompts", "no usable prompts (each must end with a user message)")
    return prompts


def sampling_arguments(spec: Any, **extra: Any) -> dict[str, Any]:
    """What RLOO and GRPO pass their trl config beyond the shared ones: a batch of
    `prompts_per_step` prompts × `num_generations` sampled completions, the sampling and KL
    settings, a constant learning rate, and a log line every step (steps are slow and few)."""
    batch = spec.num_generations * spec.prompts_per_step
    return {
        "per_device_train_batch_size": batch,
        "per_device_eval_batch_size": batch,
        "num_generations": spec.num_generations,
        "max_completion_length": spec.max_completion_length,
        "temperature": spec.temperature,
        "beta": spec.beta,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "logging_steps": 1,
        **extra,
    }


def as_json(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [m.to_json() for m in messages]


def publish_adapter(
    trainer: Any, tokenizer: Any, ctx: JobContext, out: str, overwrite: bool, meta: dict[str, Any]
) -> Path:
    """Save the trained LoRA in PEFT format with meta.json and move it into data/adapters in one rename."""
    staging = ctx.directory / "adapter"
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    meta = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "job_id": ctx.job_id, **meta}
    (staging / "meta.json").write_text(json.dumps(meta, indent=2, default=float), encoding="utf-8")
    target = training.publish(staging, adapters.adapter_path(out), overwrite=overwrite)
    ctx.info(f"adapter saved to {target}")
    return target


def update_meta(target: Path, extra: dict[str, Any]) -> None:
    """Add measurements made after publishing (the adapter is already usable; meta is rewritten atomically)."""
    path = target / "meta.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update(extra)
    write_atomic(path, json.dumps(meta, indent=2, default=float))
