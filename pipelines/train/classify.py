"""Classification fine-tuning: a sequence-classification head on the base model.

The lectures' PyTorch notebooks (sentiment, paraphrase) put a classifier on a pretrained model
two ways, and this job runs both so they can be compared on the same split:

- **feature-based** (`--mode head`): the model is frozen and only the new head (one linear layer
  from the last token's hidden state to the labels) learns; the model is a fixed feature
  extractor;
- **fine-tuned**: the model learns too, through LoRA (`--mode lora`, with the head trained in
  full) or every weight (`--mode full`).

Accuracy on a held-out split (stratified by label, seeded) is measured before training (an
untrained head: about chance) and after. Training is transformers' `Trainer` (trl has no
classification trainer); a result lives in `<data>/classifiers/NAME/`: the head alone
(`head.safetensors`, a few KB), a PEFT adapter, or a whole model, with meta.json.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from pipelines.config import Settings, get_settings
from pipelines.engine import adapters
from pipelines.engine.sampling import InvalidParameter
from pipelines.errors import PlaygroundError
from pipelines.knobs import knob
from pipelines.store.jobs import JobContext
from pipelines.store.recent import Recent
from pipelines.store.rows import RowLimits, RowsError, read_rows
from pipelines.train import training
from pipelines.train.job import HeldOutJob
from pipelines.train.sft_data import RowProblem, text_field

MODES = ("head", "lora", "full")
DEFAULT_RATES = {"head": 2e-3, "lora": 5e-4, "full": 2e-5}
MAX_LABELS = 50
MAX_TEXT_CHARS = 20_000
LIMITS = RowLimits(max_bytes=50_000_000, max_rows=100_000, max_row_chars=2 * MAX_TEXT_CHARS + 1_000)


class ClassifierError(PlaygroundError, ValueError):
    """A classifier is missing or unusable."""


@dataclass
class ClassifySpec(training.SpecDict):
    """A classification job; validated so a bad value fails before any work."""

    data: str = knob(
        help="JSONL, CSV or Parquet with 'text' (and optionally 'text_pair') and 'label'", label="Data", metavar="FILE"
    )
    out: str = training.out_knob("classifiers", "Classifier name")
    mode: str = knob(
        "head",
        help="what learns: the head only on the frozen model's features (feature-based), LoRA + head, or every weight",
        label="Mode",
        choices=MODES,
    )
    base_model: str | None = training.base_model_knob()
    epochs: float = training.epochs_knob(8.0)
    max_steps: int = training.max_steps_knob()
    learning_rate: float | None = training.learning_rate_knob(
        None, "peak learning rate; default 2e-3 (head), 5e-4 (LoRA), 2e-5 (full)"
    )
    batch_size: int = training.batch_size_knob()
    max_length: int = training.max_length_knob(128)
    lora_r: int = training.lora_r_knob(8)
    lora_alpha: int = training.lora_alpha_knob(16)
    eval_fraction: float = training.eval_fraction_knob(0.25, "examples of each label")
    seed: int = training.seed_knob()
    skip_bad_rows: bool = training.skip_bad_rows_knob()
    overwrite: bool = training.overwrite_knob()

    def __post_init__(self) -> None:
        from pipelines import knobs

        knobs.check(self)
        training.check_output_name(self.out)

    @property
    def rate(self) -> float:
        return self.learning_rate or DEFAULT_RATES[self.mode]


# --- data --------------------------------------------------------------------------------------


@dataclass
class Examples:
    rows: list[dict[str, Any]]  # {"text", "text_pair"?, "label"}
    labels: list[str]  # sorted: a label's index is its class id
    problems: list[RowProblem]
    total_rows: int

    @property
    def paired(self) -> bool:
        return any("text_pair" in row for row in self.rows)


def _field(record: dict[str, Any], key: str, row: int, problems: list[RowProblem], optional: bool = False) -> Any:
    """A column as fine-tuning data reads it (`sft_data.text_field`), integer labels as their text,
    and at most MAX_TEXT_CHARS long."""
    if key == "label" and isinstance(record.get(key), (int, bool)):
        return str(int(record[key]))
    value = text_field(record, key, row, problems, optional=optional)
    if value is None:
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.append(RowProblem(row, key, f"is {len(value):,} characters; the limit is {MAX_TEXT_CHARS:,}"))
        return None
    return value.strip()


def read_examples(path: str | Path) -> Examples:
    """Labelled texts from a file, each bad row listed with its number and why."""
    rows: list[dict[str, Any]] = []
    problems: list[RowProblem] = []
    total = 0
    try:
        for number, record, error in read_rows(path, LIMITS):
            total += 1
            if error is not None or not isinstance(record, dict):
                problems.append(RowProblem(number, None, error or "is not an object with 'text' and 'label'"))
                continue
            found = len(problems)
            text = _field(record, "text", number, problems)
            pair = _field(record, "text_pair", number, problems, optional=True)
            label = _field(record, "label", number, problems)
            if len(problems) == found:
                rows.append({"text": text, "label": label, **({"text_pair": pair} if pair else {})})
    except (RowsError, OSError) as error:
        raise InvalidParameter("data", str(error)) from error
    labels = sorted({row["label"] for row in rows})
    return Examples(rows, labels, problems, total)


def check_examples(examples: Examples, skip_bad_rows: bool) -> None:
    if examples.problems and not skip_bad_rows:
        listed = "; ".join(str(p) for p in examples.problems[:5])
        raise InvalidParameter(
            "data",
            f"{len({p.row for p in examples.problems})} rows have problems ({listed}); fix them or skip bad rows",
        )
    if len(examples.labels) < 2:
        raise InvalidParameter("data", f"need at least 2 different labels, found {len(examples.labels)}")
    if len(examples.labels) > MAX_LABELS:
        raise InvalidParameter("data", f"{len(examples.labels)} different labels; at most {MAX_LABELS}")
    rare = [label for label, n in Counter(r["label"] for r in examples.rows).items() if n < 2]
    if rare:
        raise InvalidParameter("data", f"each label needs at least 2 examples; too few for {', '.join(rare[:5])}")


def split(rows: Sequence[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded split that holds out the same share of every label (at least one each)."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    rng = random.Random(seed)
    train, held = [], []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        n = 0 if fraction <= 0 else max(1, round(len(group) * fraction))
        held += group[:n]
        train += group[n:]
    rng.shuffle(train)
    return train, held


def model_input(row: dict[str, Any]) -> str:
    """One text per example: a pair is its two sentences on two lines (a decoder has no segment ids)."""
    return row["text"] + ("\n" + row["text_pair"] if row.get("text_pair") else "")


# --- where classifiers live --------------------------------------------------------------------


def classifiers_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "classifiers"


def classifier_path(name: str, settings: Settings | None = None) -> Path:
    return classifiers_dir(settings) / adapters.check_name(name)


def list_classifiers(settings: Settings | None = None) -> list[dict[str, Any]]:
    return sorted(adapters.named_results(classifiers_dir(settings)), key=lambda m: m.get("created", ""), reverse=True)


def meta(name: str) -> dict[str, Any]:
    path = classifier_path(name)
    if not (path / "meta.json").is_file():
        raise ClassifierError(f"no classifier named {name!r} in {classifiers_dir()}")
    return json.loads((path / "meta.json").read_text(encoding="utf-8"))


# --- the model ---------------------------------------------------------------------------------


def load_base_classifier(source: str, labels: Sequence[str], tokenizer: Any) -> Any:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        dtype=torch.float32,
    )
    # Llama-family classifiers score the last real token, found through config.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def prepare(model: Any, spec: ClassifySpec) -> Any:
    """Freeze or wrap the model for the mode: what learns is what the lecture's method trains."""
    if spec.mode == "head":
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("score.")
        return model
    if spec.mode == "lora":
        from peft import get_peft_model

        return get_peft_model(model, training.classifier_lora(spec.lora_r, spec.lora_alpha))
    return model


def _tokenizer(source: str) -> Any:
    tokenizer = training.load_tokenizer(source)
    tokenizer.padding_side = "right"
    return tokenizer


def _dataset(rows: Sequence[dict[str, Any]], labels: Sequence[str], tokenizer: Any, max_length: int) -> Any:
    from datasets import Dataset

    index = {label: i for i, label in enumerate(labels)}
    encoded = tokenizer([model_input(r) for r in rows], truncation=True, max_length=max_length)
    return Dataset.from_dict({**encoded, "labels": [index[r["label"]] for r in rows]})


def _accuracy(prediction: Any) -> dict[str, float]:
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def _confusion(trainer: Any, dataset: Any, labels: Sequence[str]) -> list[list[int]]:
    """Rows: the true label; columns: the predicted one."""
    output = trainer.predict(dataset)
    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in zip(output.label_ids, output.predictions.argmax(-1), strict=False):
        matrix[int(truth)][int(guess)] += 1
    return matrix


class ClassifyJob(HeldOutJob):
    kind = "classifier"
    noun = "classifier"
    result_key = "classifier_dir"
    staging_name = "classifier"
    measured: ClassVar[str] = "held-out accuracy"
    data_name: ClassVar[str] = "labelled texts"
    unit: ClassVar[str] = "examples"
    before_prefix: ClassVar[str] = "before"

    def target(self) -> Path:
        return classifier_path(self.spec.out)

    def prepare_data(self) -> None:
        spec = self.spec
        self.examples = examples = read_examples(spec.data)
        check_examples(examples, spec.skip_bad_rows)
        self.train_rows, self.eval_rows = split(examples.rows, spec.eval_fraction, spec.seed)
        self.held_out = len(self.eval_rows)
        self.ctx.info(
            f"{len(examples.rows)} examples, labels {', '.join(examples.labels)} ({len(examples.problems)} bad rows "
            f"skipped); {len(self.train_rows)} train, {len(self.eval_rows)} held out (the same share of each label); "
            f"mode {spec.mode}; base model {self.base.name} on {self.base.device} ({self.base.precision.reason})"
        )

    def prepare_model(self) -> None:
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        spec, labels = self.spec, self.examples.labels
        self.tokenizer = tokenizer = _tokenizer(self.base.source)
        model = prepare(load_base_classifier(self.base.source, labels, tokenizer), spec).to(self.base.device)
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        eval_ds = _dataset(self.eval_rows, labels, tokenizer, spec.max_length) if self.eval_rows else None
        planned = training.planned_steps(len(self.train_rows), spec.batch_size, 1, spec.epochs, spec.max_steps)
        self.build_trainer(
            Trainer,
            lambda max_length=None, **arguments: TrainingArguments(**arguments),  # the tokeniser cut: no max_length
            planned=planned,
            has_eval=False,
            arguments={"learning_rate": spec.rate},
            model=model,
            train_dataset=_dataset(self.train_rows, labels, tokenizer, spec.max_length),
            eval_dataset=eval_ds,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=_accuracy,
        )
        self.ctx.info(
            f"{self.trainable:,} trainable parameters of {total:,} ({100 * self.trainable / total:.2f}%); ~{planned} steps"
        )

    def measure_after(self) -> None:
        super().measure_after()
        trainer, labels = self.trainer, self.examples.labels
        self.confusion = _confusion(trainer, trainer.eval_dataset, labels) if self.held_out else []
        self.metrics = {
            "eval_accuracy_before": self.before.get("before_accuracy"),
            "eval_accuracy": self.after.get("eval_accuracy"),
            "eval_loss_before": self.before.get("before_loss"),
            "eval_loss": self.after.get("eval_loss"),
            "train_loss": float(self.train_result.training_loss),
        }
        self.ctx.info("held-out: " + ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items() if isinstance(v, float)))

    def save(self, staging: Path) -> None:
        save(self.trainer.model, self.spec.mode, staging)

    def meta(self) -> dict[str, Any]:
        examples = self.examples
        return {
            "mode": self.spec.mode,
            "labels": examples.labels,
            "paired": examples.paired,
            "data": {
                "source": Path(self.spec.data).name,
                "examples": len(examples.rows),
                "bad_rows": len(examples.problems),
                "train_examples": len(self.train_rows),
                "eval_examples": len(self.eval_rows),
                "split": "stratified by label",
            },
            "trainable_params": self.trainable,
            "metrics": self.metrics,
            "confusion": self.confusion,
        }

    def hyperparameters(self) -> dict[str, Any]:
        return {"learning_rate": self.spec.rate}

    def saved_note(self, target: Path) -> str:
        self.size_mb = sum(p.stat().st_size for p in target.iterdir() if p.is_file()) / 2**20
        return f" ({self.size_mb:.2f} MiB)"

    def result(self) -> dict[str, Any]:
        return {
            "mode": self.spec.mode,
            "labels": self.examples.labels,
            "trainable_params": self.trainable,
            "size_mb": round(self.size_mb, 3),
            "confusion": self.confusion,
            **self.metrics,
        }


def run(spec: ClassifySpec, ctx: JobContext) -> dict[str, Any]:
    return ClassifyJob(spec, ctx).run()


def save(model: Any, mode: str, directory: Path) -> None:
    """Only what training changed: the head (feature-based), the adapter and head (LoRA), or everything."""
    if mode == "head":
        from safetensors.torch import save_file

        head = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
        save_file(head, str(directory / "head.safetensors"))
    else:
        model.save_pretrained(directory)


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "classify")."""
    return run(ClassifySpec.from_dict(ctx.spec), ctx)


# --- using a trained classifier ------------------------------------------------------------------


class Classifier:
    """A trained classifier loaded for prediction (one forward at a time)."""

    def __init__(self, name: str) -> None:
        from pipelines.engine import models

        self.name = name
        self.path = classifier_path(name)
        self.info = meta(name)
        self.labels: list[str] = list(self.info["labels"])
        try:
            mode = self.info["mode"]
            base_source, _ = models.resolve_source(self.info["base_model_source"])
            self.tokenizer = _tokenizer(base_source)
            # a full run saved the whole model; the others are the base model plus what they trained
            model = load_base_classifier(str(self.path) if mode == "full" else base_source, self.labels, self.tokenizer)
            if mode == "lora":
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(self.path))
            elif mode == "head":
                from safetensors.torch import load_file

                model.load_state_dict(load_file(str(self.path / "head.safetensors")), strict=False)
            self.model = model
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ClassifierError(
                f"classifier {name!r} cannot be loaded: {str(error).splitlines()[0][:200]}"
            ) from error
        self.model.eval()
        self.lock = threading.Lock()

    @torch.inference_mode()
    def predict(self, text: str, text_pair: str | None = None) -> dict[str, Any]:
        if not isinstance(text, str) or not text.strip():
            raise InvalidParameter("text", "is empty")
        if len(text) > MAX_TEXT_CHARS or len(text_pair or "") > MAX_TEXT_CHARS:
            raise InvalidParameter("text", f"longer than {MAX_TEXT_CHARS:,} characters")
        row = {"text": text.strip(), **({"text_pair": text_pair.strip()} if text_pair and text_pair.strip() else {})}
        max_length = int(self.info.get("hyperparameters", {}).get("max_length", 128))
        encoded = self.tokenizer(model_input(row), truncation=True, max_length=max_length, return_tensors="pt")
        with self.lock:
            logits = self.model(**encoded).logits[0].float()
        probabilities = torch.softmax(logits, dim=-1).tolist()
        best = max(range(len(self.labels)), key=lambda i: probabilities[i])
        return {
            "label": self.labels[best],
            "probabilities": {label: float(p) for label, p in zip(self.labels, probabilities, strict=False)},
        }


def _stamp(name: str) -> int:
    meta_file = classifier_path(name) / "meta.json"
    if not meta_file.is_file():
        raise ClassifierError(f"no classifier named {name!r} in {classifiers_dir()}")
    return meta_file.stat().st_mtime_ns


_loaded: Recent[Classifier] = Recent(Classifier, _stamp)


def classifier(name: str) -> Classifier:
    """A cached classifier (the two most recently used stay loaded); reloaded if retrained."""
    return _loaded.get(name)


def predict(name: str, text: str, text_pair: str | None = None) -> dict[str, Any]:
    return classifier(name).predict(text, text_pair)
