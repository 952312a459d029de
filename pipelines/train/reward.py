"""Reward models: a scalar score learned from human preference pairs (the first step of RLHF).

A reward model is the base model with a one-output classification head, trained (in
`reward_training`, as a job) to minimise the Bradley-Terry loss
-log sigma(r(x, y_chosen) - r(x, y_rejected)). This module holds what training and everything
else share: the spec, where models live, the pairs and their split *by prompt* (held-out accuracy
then measures generalisation to questions the model never saw), and scoring.

Scoring tokenises exactly as the trainer did (the chat template over prompt + response, no
generation prompt), so scores at inference mean what they meant in training.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines import gpu
from pipelines.config import Settings, get_settings
from pipelines.engine import adapters, bundled
from pipelines.engine.sampling import InvalidParameter
from pipelines.errors import PlaygroundError
from pipelines.labels import preference_data
from pipelines.store.recent import Recent
from pipelines.train import training


class RewardModelError(PlaygroundError, ValueError):
    """A reward model is missing or unusable."""


@dataclass
class RewardSpec(training.PairSpec):
    """A reward-model job: the shared pair-training fields, with reward-model defaults."""

    out: str = training.out_knob("reward_models")


# --- where reward models live ------------------------------------------------------------------


def models_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "reward_models"


def model_path(name: str, settings: Settings | None = None) -> Path:
    """Where a reward model of that name is written (training) or found first (everything else)."""
    return models_dir(settings) / adapters.check_name(name)


def find(name: str) -> Path:
    """The reward model a name refers to: one trained here, else the bundled one of that name."""
    path = model_path(name)
    if (path / "meta.json").is_file():
        return path
    shipped = bundled.find(bundled.REWARD_MODELS, name)
    if shipped is None:
        raise RewardModelError(f"no reward model named {name!r} in {models_dir()}")
    return shipped


def list_models(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every reward model trained here, newest first, then the bundled ones (each with "bundled")."""
    found = [{**m, "bundled": False} for m in adapters.named_results(models_dir(settings))]
    found.sort(key=lambda m: m.get("created", ""), reverse=True)
    offered = {path.name for path in bundled.reward_model_dirs()} - {m["name"] for m in found}
    shipped = [{**m, "bundled": True} for m in adapters.named_results(bundled.REWARD_MODELS) if m["name"] in offered]
    return found + shipped


def label(info: dict[str, Any]) -> str:
    return f"{info['name']} {bundled.LABEL}" if info.get("bundled") else info["name"]


def choices(settings: Settings | None = None) -> list[tuple[str, str]]:
    """(label, name) of every reward model, as the pickers show them."""
    return [(label(m), m["name"]) for m in list_models(settings)]


def meta(name: str) -> dict[str, Any]:
    return json.loads((find(name) / "meta.json").read_text(encoding="utf-8"))


# --- data --------------------------------------------------------------------------------------


def _as_json(messages: Sequence[Any]) -> list[dict[str, str]]:
    return [m.to_json() if hasattr(m, "to_json") else dict(m) for m in messages]


def load_pairs(spec: training.PairSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pairs as trl conversational rows, row errors)."""
    if spec.from_store:
        pairs, _ = preference_data.pairs_and_unpaired()
        rows = [{k: r[k] for k in preference_data.TRL_PAIR_COLUMNS} for r in pairs]
        errors: list[dict[str, Any]] = []
    else:
        raw, errors = preference_data.read_pairs(spec.data or "")
        rows = [
            {"prompt": _as_json(r["prompt"]), "chosen": _as_json(r["chosen"]), "rejected": _as_json(r["rejected"])}
            for r in raw
            if "chosen" in r
        ]
    if errors and not spec.skip_bad_rows:
        listed = "; ".join(f"line {e['line']}: {e['error']}" for e in errors[:5])
        raise InvalidParameter("data", f"{len(errors)} rows have problems ({listed}); fix them or skip bad rows")
    if len(rows) < 2:
        raise InvalidParameter("data", f"need at least 2 preference pairs to train, found {len(rows)}")
    return rows, errors


def split_by_prompt(rows: Sequence[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Held-out pairs whose prompts never appear in training."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(json.dumps(row["prompt"], sort_keys=True), []).append(row)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    if fraction <= 0 or len(keys) < 2:
        return list(rows), []
    n_eval = max(1, round(len(keys) * fraction))
    held = set(keys[:n_eval])
    train = [r for k in keys if k not in held for r in groups[k]]
    evaluation = [r for k in keys if k in held for r in groups[k]]
    return train, evaluation


def tokenize(tokenizer: Any, prompt: Sequence[dict[str, str]], response: str) -> list[int]:
    """Token ids of a scored conversation, exactly as trl's RewardTrainer builds them."""
    ids = tokenizer.apply_chat_template(
        list(prompt) + [{"role": "assistant", "content": response}], tokenize=True, return_dict=True
    )
    return list(ids["input_ids"])


# --- scoring -----------------------------------------------------------------------------------


def load_classifier(source: str, tokenizer: Any) -> Any:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    # Llama-family classifiers find the scored (last real) token through config.pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


class RewardScorer:
    """A trained reward model loaded for scoring (thread-safe; one forward at a time)."""

    def __init__(self, name: str, path: Path | None = None) -> None:
        from peft import PeftModel

        from pipelines.engine import models

        self.name = name
        self.path = path or find(name)
        info = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
        source, _ = models.resolve_source(info["base_model_source"])
        # a trained model keeps the tokenizer it was trained with; a bundled one uses its base model's
        has_own = (self.path / "tokenizer_config.json").is_file()
        self.tokenizer = training.load_tokenizer(self.path if has_own else source)
        base = load_classifier(source, self.tokenizer)
        try:
            self.model = PeftModel.from_pretrained(base, str(self.path)).eval()
        except (OSError, ValueError, RuntimeError) as error:
            raise RewardModelError(
                f"reward model {name!r} cannot be loaded: {str(error).splitlines()[0][:200]}"
            ) from error
        self.lock = threading.Lock()

    @torch.inference_mode()
    def score(self, prompt: Sequence[Any], responses: Sequence[str], batch_size: int = 8) -> list[float]:
        prompt = _as_json(prompt)
        pad = self.tokenizer.pad_token_id
        scores: list[float] = []
        for start in range(0, len(responses), batch_size):
            ids = [tokenize(self.tokenizer, prompt, r) for r in responses[start : start + batch_size]]
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, row in enumerate(ids):  # right padding, as trl's preference collator pads
                input_ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            with self.lock:
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits
            scores.extend(float(x) for x in logits[:, 0])
        return scores


def _stamp(path: Path) -> tuple[Path, int]:
    return path, (path / "meta.json").stat().st_mtime_ns


_scorers: Recent[RewardScorer] = Recent(RewardScorer, lambda name: _stamp(find(name)))


def scorer(name: str) -> RewardScorer:
    """A cached scorer (the two most recently used stay loaded); reloaded if retrained."""
    return _scorers.get(name)


@gpu.task()
def score(name: str, prompt: Sequence[Any] | str, response: str) -> float:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return scorer(name).score(messages, [response])[0]


@gpu.task(120)
def evaluate_pairs(name: str | RewardScorer, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fraction of pairs where the chosen response scores above the rejected one."""
    model = name if isinstance(name, RewardScorer) else scorer(name)
    correct, margins = 0, []
    for row in rows:
        chosen, rejected = model.score(row["prompt"], [row["chosen"][-1]["content"], row["rejected"][-1]["content"]])
        correct += chosen > rejected
        margins.append(chosen - rejected)
    n = len(rows)
    return {"accuracy": correct / n if n else None, "n": n, "mean_margin": sum(margins) / n if n else None}


def evaluate_file(name: str, path: str | Path) -> dict[str, Any]:
    raw, errors = preference_data.read_pairs(path)
    rows = [
        {"prompt": _as_json(r["prompt"]), "chosen": _as_json(r["chosen"]), "rejected": _as_json(r["rejected"])}
        for r in raw
        if "chosen" in r
    ]
    return {**evaluate_pairs(name, rows), "errors": errors}


def agreement_with_humans(name: str) -> dict[str, Any]:
    """How often the reward model prefers what the annotators preferred, over the stored pairs."""
    pairs, _ = preference_data.pairs_and_unpaired()
    return evaluate_pairs(name, pairs)
