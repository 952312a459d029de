"""Knowledge distillation: a smaller student learns the teacher's next-token distributions.

The student is the teacher with whole blocks removed: the ones that change the residual stream least,
by ShortGPT's Block Influence (BI = 1 - cos(h_in, h_out) of a block, averaged over the positions of
bundled text; Men et al. 2024). It starts from the teacher's own weights (prune, then distill, as in
NVIDIA's Minitron). Removing blocks breaks a model (measured on the bundled one: 10 of 30 blocks
removed, perplexity from 17 to 100), so LoRA on the blocks that remain is trained with trl's
`GKDTrainer` to match the teacher's whole next-token distribution on every answer token, by the
generalized Jensen-Shannon divergence (β = 0: forward KL, Hinton's soft targets; 1: reverse KL) —
on answers the teacher itself wrote to the prompts (sequence-level KD, Kim & Rush 2016), with a
share λ of steps on answers the student writes (on-policy GKD, Agarwal et al. 2024; slow on a CPU).

The saved student is the LoRA adapter plus the list of blocks it keeps: it is rebuilt from the
teacher's weights, so a student of a 135M model ships in a few MB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipelines import knobs
from pipelines.config import DATASETS, get_settings
from pipelines.engine import model_structure
from pipelines.engine.chat import Message
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.store.jobs import JobContext, Phase
from pipelines.train import evaluation, training
from pipelines.train.align import common
from pipelines.train.job import TrainingJob

DEFAULT_PROMPTS = (DATASETS / "concise_tutor.jsonl", DATASETS / "preference_pairs.jsonl")
STUDENT_FILE = "student.json"  # the blocks kept, beside the adapter
HELD_OUT_FILE = "held_out.jsonl"  # the held-out conversations (teacher answers) it is measured on


def students_dir() -> Path:
    return get_settings().data_dir / "students"


def student_path(name: str) -> Path:
    return students_dir() / name


@dataclass
class DistillSpec(training.SpecDict):
    out: str = training.out_knob("students", "Student name")
    prompts: str | None = knob(
        None,
        help="a file with a 'prompt' column (text or messages) for the teacher to answer "
        "(default: the bundled concise_tutor and preference_pairs prompts)",
        label="Prompts",
        metavar="FILE",
    )
    base_model: str | None = training.base_model_knob()
    layers: int = knob(
        20,
        help="transformer blocks the student keeps (the teacher's with the highest Block Influence)",
        label="Blocks kept",
        low=1,
        high=1000,
        step=1,
        slider=False,
    )
    answer_tokens: int = knob(
        96,
        help="longest answer the teacher writes per prompt (the text the student learns on)",
        label="Answer length (tokens)",
        low=4,
        high=2048,
        step=1,
        slider=False,
    )
    beta: float = knob(
        0.5,
        help="generalized JSD: 0 forward KL (soft targets), 1 reverse KL, 0.5 Jensen-Shannon",
        label="Divergence β",
        low=0,
        high=1,
        step=0.05,
    )
    lmbda: float = knob(
        0.0,
        help="share of steps on answers the student writes itself (on-policy; each such step generates)",
        label="On-policy share λ",
        low=0,
        high=1,
        step=0.05,
    )
    epochs: float = training.epochs_knob(6.0)
    max_steps: int = training.max_steps_knob()
    learning_rate: float = training.learning_rate_knob(5e-4)
    batch_size: int = training.batch_size_knob(8)
    max_length: int = training.max_length_knob(256)
    lora_r: int = training.lora_r_knob(16)
    lora_alpha: int = training.lora_alpha_knob(32)
    eval_fraction: float = training.eval_fraction_knob(0.1, "prompts")
    seed: int = training.seed_knob()
    overwrite: bool = training.overwrite_knob()

    def __post_init__(self) -> None:
        knobs.check(self)
        training.check_output_name(self.out)


# --- the student's shape -------------------------------------------------------------------------


def block_influence(model: Any, ids: torch.Tensor) -> list[float]:
    """1 - cos(input, output) of each block's hidden states, averaged over positions: how much a
    block changes the residual stream (a block with BI near 0 is nearly the identity)."""
    with torch.inference_mode():
        states = model(ids, output_hidden_states=True).hidden_states
    cosine = torch.nn.functional.cosine_similarity
    return [
        float(1 - cosine(states[i][0].float(), states[i + 1][0].float(), dim=-1).mean()) for i in range(len(states) - 1)
    ]


def blocks_to_keep(influence: Sequence[float], count: int) -> list[int]:
    """The `count` blocks with the highest influence, in their order in the model."""
    if not 1 <= count <= len(influence):
        raise InvalidParameter("layers", f"must be between 1 and the teacher's {len(influence)} blocks")
    ranked = sorted(range(len(influence)), key=lambda i: (-influence[i], i))
    return sorted(ranked[:count])


def cut(model: Any, keep: Sequence[int]) -> Any:
    """The model with only the blocks in `keep` (in place; renumbered so the KV cache indexes them)."""
    blocks = model_structure.decoder_blocks(model)
    if not blocks:
        raise InvalidParameter("base_model", "has no decoder blocks to remove (a transformers decoder's model.layers)")
    model.model.layers = torch.nn.ModuleList([blocks[i] for i in keep])
    for index, block in enumerate(model.model.layers):
        if hasattr(block, "self_attn"):
            block.self_attn.layer_idx = index
    config = model.config
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)
    return model


def load_teacher(source: str, device: str = "cpu") -> tuple[Any, Any]:
    model, tokenizer = common.load_policy(source, device)
    return model.eval(), tokenizer


def _text_ids(tokenizer: Any) -> torch.Tensor:
    return torch.tensor([tokenizer(evaluation.general_text(), add_special_tokens=False)["input_ids"][:1024]])


def offered(settings: Any = None) -> dict[str, Path]:
    """Students that fit the model the app serves: the bundled ones (for the bundled model) and those
    trained here from it."""
    from pipelines.engine import bundled, models

    settings = settings or get_settings()
    found = {path.name: path for path in bundled.student_dirs(settings)}
    configured = models.configured_model_id(settings)
    root = students_dir()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (path / STUDENT_FILE).is_file() and meta.get("base_model_source") == configured:
            found.setdefault(path.name, path)
    return found


def find(name: str, settings: Any = None) -> Path:
    students = offered(settings)
    if name not in students:
        listed = ", ".join(students) or "none for this model: train one with `python -m pipelines distill`"
        raise InvalidParameter("student", f"no distilled student named {name!r}; offered: {listed}")
    return students[name]


def made(name: str) -> str:
    """How a student was made and what it measured when trained: a sentence for the panel ('' if unknown)."""
    from pipelines.engine import bundled

    try:
        path = find(name)
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (InvalidParameter, OSError, ValueError):
        return ""
    metrics = meta.get("metrics", {})
    before, after = metrics.get("before", {}), metrics.get("after", {})
    minutes = float(meta.get("seconds", 0)) / 60
    recipe = bundled.recipe(path) if bundled.is_bundled(path) else {}
    how = f" with `{recipe['reproduce']}`" if recipe.get("reproduce") else ""
    if not before or not after:
        return f"Trained{how} in {minutes:.0f} min."
    return (
        f"Trained{how} in {minutes:.0f} min on {meta.get('hyperparameters', {}).get('device', 'cpu')}: on "
        f"{meta.get('data', {}).get('held_out', '?')} held-out answers, the student picks the teacher's next token "
        f"{before['held_out_agreement']:.0%} → {after['held_out_agreement']:.0%} of the time (KL "
        f"{before['held_out_kl']:.2f} → {after['held_out_kl']:.2f} nats per token)."
    )


def kept_blocks(path: Path) -> list[int]:
    return list(json.loads((Path(path) / STUDENT_FILE).read_text(encoding="utf-8"))["layers"])


def held_out(path: Path) -> list[list[dict[str, str]]]:
    lines = (Path(path) / HELD_OUT_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_student(path: Path, source: str) -> tuple[Any, Any, list[int]]:
    """(student with its adapter, tokenizer, blocks kept) rebuilt from the teacher's weights."""
    from peft import PeftModel

    keep = kept_blocks(path)
    teacher, tokenizer = load_teacher(source)
    return PeftModel.from_pretrained(cut(teacher, keep), str(path)).eval(), tokenizer, keep


def prompt_texts(path: str | None) -> list[list[Message]]:
    """The prompts the teacher answers: the file's, or the bundled ones (duplicates once)."""
    files = [path] if path else [str(p) for p in DEFAULT_PROMPTS]
    seen: dict[str, list[Message]] = {}
    for file in files:
        for messages in common.load_prompts(file):
            seen.setdefault(json.dumps(common.as_json(messages)), list(messages))
    return list(seen.values())


def teacher_answers(
    teacher: Any, tokenizer: Any, prompts: Sequence[Sequence[Message]], tokens: int, progress: Any = None
) -> list[list[dict[str, str]]]:
    """Each prompt with the teacher's greedy answer appended: the conversations the student learns on."""
    conversations = [common.as_json(p) for p in prompts]
    answers = evaluation.greedy_answers(teacher, tokenizer, conversations, tokens, progress)
    return [[*c, {"role": "assistant", "content": a.strip()}] for c, a in zip(conversations, answers, strict=True)]


# --- how close the student is --------------------------------------------------------------------


def _answer_positions(tokenizer: Any, conversation: Sequence[dict[str, str]]) -> tuple[torch.Tensor, int]:
    prompt = tokenizer.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
    full = prompt + conversation[-1]["content"]
    ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
    start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return ids, start


def closeness(
    teacher: Any, student: Any, tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]]
) -> dict[str, float]:
    """On held-out answers: KL(teacher || student) per answer token (nats) and the share of answer
    positions where both pick the same next token; on general text (never trained on): perplexity."""
    kl_sum, agree, positions = 0.0, 0, 0
    with torch.inference_mode():
        for conversation in conversations:
            ids, start = _answer_positions(tokenizer, conversation)
            if ids.shape[1] - start < 2:
                continue
            t = torch.log_softmax(teacher(ids).logits[0, start - 1 : -1].float(), -1)
            s = torch.log_softmax(student(ids).logits[0, start - 1 : -1].float(), -1)
            kl_sum += float((t.exp() * (t - s)).sum())
            agree += int((t.argmax(-1) == s.argmax(-1)).sum())
            positions += t.shape[0]
    text = evaluation.general_text()
    return {
        "held_out_kl": kl_sum / max(positions, 1),
        "held_out_agreement": agree / max(positions, 1),
        "general_perplexity": evaluation.text_perplexity(student, tokenizer, text),
    }


# --- the job ---------------------------------------------------------------------------------------


class DistillJob(TrainingJob):
    kind = "distill"
    noun = "student"
    result_key = "student_dir"
    staging_name = "student"

    def phases(self) -> Sequence[Phase]:
        return (
            Phase("prepare", "Prepare: prompts, teacher, which blocks to keep"),
            Phase("answers", "The teacher answers the prompts", unit="prompts"),
            Phase("before", "Measure the cut student before distillation"),
            Phase("train", "Distill", unit="steps"),
            Phase("after", "Measure the distilled student"),
        )

    def target(self) -> Path:
        return student_path(self.spec.out)

    def prepare_data(self) -> None:
        self.prompts = prompt_texts(self.spec.prompts)
        if len(self.prompts) < 2:
            raise InvalidParameter("prompts", "needs at least two prompts: one to learn on and one to measure")

    def prepare_model(self) -> None:
        import copy
        import warnings

        from datasets import Dataset

        with warnings.catch_warnings():  # "experimental": GKD is trl's token-level distillation trainer
            warnings.simplefilter("ignore")
            from trl.experimental.gkd import GKDConfig, GKDTrainer

        spec, ctx = self.spec, self.ctx
        self.teacher, self.tokenizer = load_teacher(self.base.source, self.base.device)
        influence = block_influence(self.teacher, _text_ids(self.tokenizer))
        self.keep = blocks_to_keep(influence, spec.layers)
        self.influence = influence
        ctx.info(
            f"{len(self.prompts)} prompts; teacher {self.base.name} ({len(influence)} blocks); the student keeps "
            f"{len(self.keep)}: {self.keep}"
        )
        ctx.phase("answers", total=len(self.prompts))
        conversations = teacher_answers(
            self.teacher, self.tokenizer, self.prompts, spec.answer_tokens, progress=lambda done: _advance(ctx, done)
        )
        from pipelines.train import sft_data

        train, self.held_out = sft_data.split(conversations, spec.eval_fraction, spec.seed)
        if not self.held_out:
            self.held_out = train[-1:]
        self.student = cut(copy.deepcopy(self.teacher), self.keep)
        planned = training.planned_steps(len(train), spec.batch_size, 1, spec.epochs, spec.max_steps)
        self.build_trainer(
            GKDTrainer,
            GKDConfig,
            planned=planned,
            has_eval=False,
            arguments={
                "lmbda": spec.lmbda,
                "beta": spec.beta,
                "max_new_tokens": spec.answer_tokens,
                "temperature": 1.0,
                "disable_dropout": True,
            },
            model=self.student,
            teacher_model=self.teacher,
            train_dataset=Dataset.from_list([{"messages": c} for c in train]),
            processing_class=self.tokenizer,
            peft_config=common.lora_config(spec.lora_r, spec.lora_alpha),
        )

    def measure_before(self) -> None:
        self.ctx.phase("before")
        model = self.trainer.model
        with model.disable_adapter():
            self.before = closeness(self.teacher, model, self.tokenizer, self.held_out)
        self.teacher_figures = {
            "general_perplexity": evaluation.text_perplexity(self.teacher, self.tokenizer, evaluation.general_text()),
            "parameters": model_structure.parameter_count(self.teacher),
        }
        self.ctx.info(f"cut student before distillation: {_line(self.before)}")

    def measure_after(self) -> None:
        self.ctx.phase("after")
        self.after = closeness(self.teacher, self.trainer.model.eval(), self.tokenizer, self.held_out)
        self.ctx.info(f"distilled student: {_line(self.after)}")

    def save(self, staging: Path) -> None:
        super().save(staging)
        shape = {"layers": self.keep, "teacher_layers": len(self.influence), "block_influence": self.influence}
        (staging / STUDENT_FILE).write_text(json.dumps(shape, indent=2), encoding="utf-8")
        rows = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in self.held_out)
        (staging / HELD_OUT_FILE).write_text(rows, encoding="utf-8")

    def meta(self) -> dict[str, Any]:
        return {
            "data": {
                "source": self.spec.prompts.rsplit("/", 1)[-1] if self.spec.prompts else "bundled prompts",
                "prompts": len(self.prompts),
                "held_out": len(self.held_out),
            },
            "layers": self.keep,
            "metrics": {
                "teacher": self.teacher_figures,
                "before": self.before,
                "after": self.after,
                "student_parameters": model_structure.parameter_count(self.trainer.model),
            },
        }

    def result(self) -> dict[str, Any]:
        return {
            "layers": self.keep,
            "teacher_parameters": self.teacher_figures["parameters"],
            "student_parameters": model_structure.parameter_count(self.trainer.model),
            "teacher_perplexity": self.teacher_figures["general_perplexity"],
            "before": self.before,
            "after": self.after,
        }


def _line(figures: dict[str, float]) -> str:
    ppl = figures["general_perplexity"]
    shown = f"{ppl:.1f}" if math.isfinite(ppl) else "inf"
    return (
        f"KL to the teacher {figures['held_out_kl']:.3f} nats/token, same next token "
        f"{figures['held_out_agreement']:.1%}, perplexity on general text {shown}"
    )


def _advance(ctx: JobContext, done: int) -> None:
    ctx.advance(done)
    ctx.check()


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "distill")."""
    return DistillJob(DistillSpec.from_dict(ctx.spec), ctx).run()
