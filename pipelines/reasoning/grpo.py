"""GRPO: reinforcement learning from verifiable rewards, on word problems with known answers.

For each problem the policy samples a *group* of G answers; rules score them (pipelines/reasoning/
rewards.py: the final number, a PAL program run in the sandbox, the answer's format, its length, a
user's own rule in the sandbox), the weighted sum r_i is each answer's reward, and its advantage is
relative to its own group: A_i = (r_i - mean(r)) / std(r) (Shao et al. 2024, DeepSeekMath; no value
network, unlike PPO). Every token of answer i is then pushed up (A_i > 0) or down (A_i < 0) through
PPO's clipped objective, min(ρ_t A_i, clip(ρ_t, 1 - ε, 1 + ε) A_i) with ρ_t = π_θ(o_t | …) /
π_old(o_t | …), minus β times the KL to the reference (the base model: the LoRA switched off). A
group whose answers all score the same has every A_i = 0 and teaches nothing — hence the check
before training.

The job is trl's `GRPOTrainer` with LoRA; it measures greedy accuracy on held-out problems (never
trained on) before and after, and writes every sampled group (answers, each reward, advantages) to
`groups.jsonl` in the job's directory, so the panel can show one group as the update sees it.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipelines import knobs, sandbox
from pipelines.config import ASSETS
from pipelines.engine import adapters
from pipelines.errors import InvalidParameter
from pipelines.knobs import knob
from pipelines.reasoning import benchmark, extract, rewards, strategies
from pipelines.reasoning.solve import extract_program
from pipelines.store.jobs import JobContext, Phase
from pipelines.train import evaluation, training
from pipelines.train.align import common
from pipelines.train.job import TrainingJob

STYLES = ("answer", "pal")
ANSWER_SYSTEM = (
    "Solve the math word problem. Think step by step in a few short sentences, then end with a line "
    "'Answer: N' where N is the final number."
)
GROUPS_FILE = "groups.jsonl"
CHECK_PROMPTS = 4  # problems sampled by the check before training
# one-step word problems (scripts/make_simple_problems.py): the bundled model solves some of them, and a
# group needs answers that differ to learn from
SIMPLE_PROBLEMS = ASSETS / "reasoning" / "simple_problems.jsonl"


@dataclass
class GRPOSpec(training.SpecDict):
    out: str = training.out_knob("adapters", "Adapter name")
    prompts: str | None = knob(
        None,
        help="problems with known answers: JSONL with 'question' and 'answer' (a number) "
        "(default: the bundled one-step word problems, assets/reasoning/simple_problems.jsonl)",
        label="Problems",
        metavar="FILE",
    )
    reward: list[str] = knob(
        default_factory=lambda: ["correctness", "format:0.5"],
        help=f"rewards as NAME or NAME:WEIGHT, among {', '.join([*rewards.FUNCTIONS, rewards.FILE])} "
        "(file: the --reward-file rule)",
        label="Rewards",
        metavar="NAME[:W]",
        flag="--reward",
    )
    reward_file: str | None = knob(
        None,
        help="Python defining reward(prompt, completion, answer) -> float, run in the sandbox once per batch",
        label="Reward file",
        metavar="FILE.py",
    )
    style: str = knob(
        "answer",
        help="how the policy answers: 'answer' (steps, then a line 'Answer: N') or 'pal' (a Python solution())",
        label="Answer style",
        choices=STYLES,
    )
    base_model: str | None = training.base_model_knob()
    num_generations: int = knob(
        4,
        help="answers sampled per problem: the group each is compared with",
        label="Group size (G)",
        low=2,
        high=64,
        step=1,
        why="the group's mean is the baseline: a group of one has no advantage",
    )
    prompts_per_step: int = knob(2, help="problems per optimizer step", label="Problems per step", low=1, high=64)
    beta: float = knob(
        0.04,
        help="KL coefficient: how strongly the policy is held near the reference (the base model)",
        label="KL β",
        low=0,
        high=10,
        step=0.01,
        slider=False,
    )
    epsilon: float = knob(
        0.2,
        help="clip range: the probability ratio's update stops counting beyond 1 ± ε",
        label="Clip range ε",
        low=0,
        high=1,
        low_open=True,
        step=0.01,
    )
    temperature: float = knob(
        1.0,
        help="sampling temperature of the group's answers",
        label="Sampling temperature",
        low=0,
        high=2,
        low_open=True,
        step=0.05,
        why="a group needs varied answers",
    )
    max_completion_length: int = knob(
        128, help="longest sampled answer in tokens", label="Answer length", low=8, high=4096, step=1, slider=False
    )
    max_steps: int = training.max_steps_knob(20)
    learning_rate: float = training.learning_rate_knob(1e-4)
    lora_r: int = training.lora_r_knob(16)
    lora_alpha: int = training.lora_alpha_knob(32)
    held_out: int = knob(
        40,
        help="problems kept out of training to measure greedy accuracy on, before and after",
        label="Held-out problems",
        low=1,
        high=10_000,
        step=1,
        slider=False,
    )
    seed: int = training.seed_knob()
    overwrite: bool = training.overwrite_knob()

    def __post_init__(self) -> None:
        knobs.check(self)
        training.check_output_name(self.out)
        if "pal" in dict(self.weights) and self.style != "pal":
            raise InvalidParameter("reward", "the 'pal' reward runs a program: choose the 'pal' answer style")

    @property
    def weights(self) -> list[tuple[str, float]]:
        """[(reward name, weight)] in the order trl receives them."""
        return rewards.parse(self.reward, has_file=bool(self.reward_file))


# --- the problems and how they are asked ----------------------------------------------------------


def problems(spec: GRPOSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training problems, held-out problems), split by the seed; refused with the file's first error."""
    rows, errors = benchmark.load_problems(spec.prompts or SIMPLE_PROBLEMS)
    if not rows:
        first = errors[0]["error"] if errors else "no problems"
        raise InvalidParameter("prompts", f"no usable problems: {first}")
    if len(rows) < 2:
        raise InvalidParameter("prompts", "needs at least two problems: one to train on and one to measure")
    order = list(range(len(rows)))
    random.Random(spec.seed).shuffle(order)
    held = min(spec.held_out, max(1, len(rows) // 2))  # at least as many to train on as to measure
    return [rows[i] for i in order[held:]], [rows[i] for i in order[:held]]


def reward_source(spec: GRPOSpec) -> str | None:
    if not spec.reward_file:
        return None
    try:
        text = Path(spec.reward_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidParameter("reward_file", f"cannot be read: {error}") from error
    return rewards.check_source(text)


def check(spec: GRPOSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """Everything that can be checked before a model loads: the name, the problems, the reward file."""
    common.check_new_adapter(spec.out, spec.overwrite)
    train, held = problems(spec)
    return train, held, reward_source(spec)


def messages(question: str, style: str) -> list[dict[str, str]]:
    system = strategies.load("pal").system if style == "pal" else ANSWER_SYSTEM
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def answer_of(text: str, style: str) -> float | None:
    """The number an answer gives: its final number, or what its program returns in the sandbox."""
    if style != "pal":
        return extract.extract_answer(text)
    report = sandbox.run(extract_program(text), sandbox.SandboxLimits(timeout_seconds=5.0))
    return extract.from_value(report.result) if report.ok else None


# --- recording each group as the update sees it --------------------------------------------------


class Recorded:
    """A reward function that also hands its scores to the recorder (trl names metrics by __name__)."""

    def __init__(self, name: str, function: Callable[..., list[float | None]], recorder: Recorder) -> None:
        self.__name__ = name
        self.function, self.recorder = function, recorder

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        scores = self.function(prompts=prompts, completions=completions, **kwargs)
        self.recorder.scored(self.__name__, prompts, completions, scores, kwargs.get("trainer_state"))
        return scores


@dataclass
class Recorder:
    """Collects every reward's scores of a batch; once the last reward has scored, computes each
    group's total and advantages as trl does and appends the batch to groups.jsonl."""

    weights: list[tuple[str, float]]
    group: int
    path: Path | None
    pending: dict[str, list[float | None]] = field(default_factory=dict)
    last: dict[str, Any] | None = None

    def scored(
        self, name: str, prompts: Sequence[Any], completions: Sequence[Any], scores: Sequence[Any], state: Any
    ) -> None:
        self.pending[name] = list(scores)
        if len(self.pending) < len(self.weights):
            return
        record = {
            "step": int(getattr(state, "global_step", 0) or 0) + 1,
            "groups": groups(self.weights, self.group, prompts, completions, self.pending),
        }
        self.pending = {}
        self.last = record
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")


def advantages(totals: Sequence[float]) -> list[float]:
    """(r - mean) / (std + 1e-4) within a group, std with Bessel's correction (torch.std, as trl)."""
    values = torch.tensor(totals, dtype=torch.float64)
    spread = float(values.std()) if len(totals) > 1 else 0.0
    return [float((v - values.mean()) / (spread + 1e-4)) for v in values]


def groups(
    weights: Sequence[tuple[str, float]],
    size: int,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    scores: Mapping[str, Sequence[Any]],
) -> list[dict[str, Any]]:
    """The batch cut into its groups (trl samples each prompt's G answers next to each other)."""
    out = []
    for start in range(0, len(completions), size):
        span = range(start, min(start + size, len(completions)))
        per_reward = {name: [scores[name][i] for i in span] for name, _ in weights}
        totals = [
            sum(w * float(per_reward[name][k]) for name, w in weights if per_reward[name][k] is not None)
            for k in range(len(span))
        ]
        out.append(
            {
                "prompt": rewards.text_of(prompts[start]),
                "completions": [rewards.text_of(completions[i]) for i in span],
                "rewards": per_reward,
                "total": totals,
                "advantages": advantages(totals),
            }
        )
    return out


def read_groups(directory: Path, limit: int = 200) -> list[dict[str, Any]]:
    """The recorded batches of a job (the newest `limit`), oldest first."""
    path = Path(directory) / GROUPS_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()[-limit:]
    return [json.loads(line) for line in lines if line.strip()]


def history(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-step curves from trl's logged records: each reward's mean and std, the KL, the answers'
    mean length (in tokens)."""
    names = sorted(
        {key.split("/")[1] for r in records for key in r if key.startswith("rewards/") and key.endswith("/mean")}
    )
    return {
        "steps": [int(r["step"]) for r in records if "rewards/" + names[0] + "/mean" in r] if names else [],
        "rewards": {name: per_step(records, f"rewards/{name}/mean") for name in names},
        "reward_std": {name: per_step(records, f"rewards/{name}/std") for name in names},
        "kl": per_step(records, "kl"),
        "completion_length": per_step(records, "completions/mean_length"),
    }


def bundled_runs() -> list[str]:
    """Bundled GRPO adapters that ship the groups their job recorded."""
    from pipelines.engine import bundled

    return [name for name in bundled.names(bundled.ADAPTERS) if (bundled.ADAPTERS / name / GROUPS_FILE).is_file()]


def bundled_run(name: str) -> Path:
    from pipelines.engine import bundled

    if name not in bundled_runs():
        raise InvalidParameter(
            "run", f"no bundled GRPO run named {name!r}; bundled: {', '.join(bundled_runs()) or 'none'}"
        )
    return bundled.ADAPTERS / name


# --- measuring -----------------------------------------------------------------------------------


def sample_groups(model: Any, tokenizer: Any, spec: GRPOSpec, rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """G sampled answers to each problem (seeded), as the trainer samples them."""
    torch.manual_seed(spec.seed)
    out = []
    for row in rows:
        text = tokenizer.apply_chat_template(
            messages(row["question"], spec.style), tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            sampled = model.generate(
                ids.repeat(spec.num_generations, 1),
                attention_mask=torch.ones_like(ids).repeat(spec.num_generations, 1),
                do_sample=True,
                temperature=spec.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=spec.max_completion_length,
                pad_token_id=tokenizer.pad_token_id,
            )
        out.append([tokenizer.decode(r[ids.shape[1] :], skip_special_tokens=True) for r in sampled])
    return out


def preflight(
    model: Any, tokenizer: Any, spec: GRPOSpec, rows: Sequence[dict[str, Any]], source: str | None
) -> dict[str, Any]:
    """Sample groups for a few problems and score them: refuse a configuration under which every
    group's rewards are equal (every advantage 0: nothing would be learned), saying which rewards
    were constant."""
    chosen = list(rows[:CHECK_PROMPTS])
    answers = sample_groups(model, tokenizer, spec, chosen)
    flat_prompts = [messages(r["question"], spec.style) for r in chosen for _ in range(spec.num_generations)]
    flat = [a for group in answers for a in group]
    gold = [r["answer"] for r in chosen for _ in range(spec.num_generations)]
    functions = rewards.functions(spec.weights, source)
    scores = {
        name: function(prompts=flat_prompts, completions=flat, answer=gold)
        for (name, _), function in zip(spec.weights, functions, strict=True)
    }
    found = groups(spec.weights, spec.num_generations, flat_prompts, flat, scores)
    if all(max(g["total"]) - min(g["total"]) < 1e-9 for g in found):
        constant = ", ".join(
            f"{name} = {sorted({v for v in values if v is not None}) or ['no score']}"
            for name, values in scores.items()
        )
        raise InvalidParameter(
            "reward",
            f"on {len(found)} sampled groups of {spec.num_generations} answers every answer got the same total reward "
            f"({constant}): every advantage would be 0 and GRPO would learn nothing. Add a reward that varies "
            "(format, length), raise the temperature, or use easier problems",
        )
    return {"groups": found}


def heldout_accuracy(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    spec: GRPOSpec,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Greedy answers to the held-out problems: the share correct, and each answer."""
    conversations = [messages(r["question"], spec.style) for r in rows]
    texts = evaluation.greedy_answers(model, tokenizer, conversations, spec.max_completion_length, progress)
    results = []
    for row, text in zip(rows, texts, strict=True):
        value = answer_of(text, spec.style)
        results.append({"question": row["question"], "answer": row["answer"], "given": value, "text": text,
                        "correct": extract.is_correct(value, row["answer"])})  # fmt: skip
    correct = sum(r["correct"] for r in results)
    return {"accuracy": correct / max(len(results), 1), "correct": correct, "n": len(results), "answers": results}


def per_step(log_history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(entry[key]) for entry in log_history if key in entry and math.isfinite(float(entry[key]))]


# --- the job ---------------------------------------------------------------------------------------


class GRPOJob(TrainingJob):
    kind = "grpo"

    def phases(self) -> Sequence[Phase]:
        return (
            Phase("prepare", "Prepare: problems, rewards, policy"),
            Phase("check", "Check: can these rewards teach anything? (sampled groups)"),
            Phase("before", "Measure before: greedy accuracy on held-out problems", unit="problems"),
            Phase("train", "Train: sample groups, score, update", unit="steps"),
            Phase("after", "Measure after: greedy accuracy on held-out problems", unit="problems"),
        )

    def target(self) -> Path:
        return adapters.adapter_path(self.spec.out)

    def prepare_data(self) -> None:
        spec = self.spec
        self.train_rows, self.held, self.source = check(spec)
        shown = ", ".join(f"{name}×{weight:g}" for name, weight in spec.weights)
        self.ctx.info(
            f"{len(self.train_rows)} problems to train on, {len(self.held)} held out; rewards {shown}; "
            f"groups of {spec.num_generations}, {spec.prompts_per_step} problems per step, β={spec.beta}, ε={spec.epsilon}; "
            f"base {self.base.name} on {self.base.device} ({self.base.precision.reason})"
        )

    def prepare_model(self) -> None:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        spec = self.spec
        model, self.tokenizer = common.load_policy(self.base.source, self.base.device)
        self.recorder = Recorder(spec.weights, spec.num_generations, self.ctx.directory / GROUPS_FILE)
        functions = [
            Recorded(name, function, self.recorder)
            for (name, _), function in zip(spec.weights, rewards.functions(spec.weights, self.source), strict=True)
        ]
        rows = [{"prompt": messages(r["question"], spec.style), "answer": r["answer"]} for r in self.train_rows]
        self.build_trainer(
            GRPOTrainer,
            GRPOConfig,
            planned=spec.max_steps,
            has_eval=False,
            arguments=common.sampling_arguments(
                spec, epsilon=spec.epsilon, reward_weights=[weight for _, weight in spec.weights]
            ),
            model=model,
            reward_funcs=functions,
            train_dataset=Dataset.from_list(rows),
            processing_class=self.tokenizer,
            peft_config=common.lora_config(spec.lora_r, spec.lora_alpha),
        )

    def measure_before(self) -> None:
        ctx, spec = self.ctx, self.spec
        model = self.trainer.model
        ctx.phase("check")
        with model.disable_adapter():
            self.checked = preflight(model, self.tokenizer, spec, self.train_rows, self.source)
            ctx.phase("before", total=len(self.held))
            self.before = heldout_accuracy(model, self.tokenizer, self.held, spec, self.advance)
        ctx.info(f"held-out accuracy before: {self.before['correct']} of {self.before['n']}")

    def measure_after(self) -> None:
        self.ctx.phase("after", total=len(self.held))
        self.after = heldout_accuracy(self.trainer.model, self.tokenizer, self.held, self.spec, self.advance)
        self.ctx.info(f"held-out accuracy after: {self.after['correct']} of {self.after['n']}")

    def advance(self, done: int) -> None:
        self.ctx.advance(done)
        self.ctx.check()

    def curves(self) -> dict[str, Any]:
        history = self.trainer.state.log_history
        return {
            "rewards": {name: per_step(history, f"rewards/{name}/mean") for name, _ in self.spec.weights},
            "reward_std": {name: per_step(history, f"rewards/{name}/std") for name, _ in self.spec.weights},
            "kl": per_step(history, "kl"),
            "completion_length": per_step(history, "completions/mean_length"),
        }

    def meta(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "data": {
                "source": Path(spec.prompts or SIMPLE_PROBLEMS).name,
                "train_problems": len(self.train_rows),
                "held_out_problems": len(self.held),
            },
            "rewards": [{"name": name, "weight": weight} for name, weight in spec.weights],
            "metrics": {
                "heldout_accuracy_before": self.before["accuracy"],
                "heldout_accuracy_after": self.after["accuracy"],
                "held_out": {"before": self.before["answers"], "after": self.after["answers"]},
                **self.curves(),
            },
        }

    def result(self) -> dict[str, Any]:
        curves = self.curves()
        return {
            "rewards": curves["rewards"],
            "heldout_accuracy_before": self.before["accuracy"],
            "heldout_accuracy_after": self.after["accuracy"],
            "heldout_problems": self.before["n"],
            "kl": curves["kl"],
            "completion_length": curves["completion_length"],
        }


def bundled_figures(path: Path, meta: dict[str, Any]) -> dict[str, float]:
    """A bundled GRPO adapter's greedy accuracy on its held-out problems (its job's split), with the
    adapter switched off (the base model) and on."""
    from pipelines.train.bundled_figures import policy

    spec = GRPOSpec.from_dict(
        {**meta["hyperparameters"], "out": "measure", "reward_file": None}
    )  # its own name is reserved
    _, held = problems(spec)
    model, tokenizer = policy(path)
    after = heldout_accuracy(model, tokenizer, held, spec)
    with model.disable_adapter():
        before = heldout_accuracy(model, tokenizer, held, spec)
    return {"heldout_accuracy_before": before["accuracy"], "heldout_accuracy_after": after["accuracy"]}


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "grpo")."""
    return GRPOJob(GRPOSpec.from_dict(ctx.spec), ctx).run()
