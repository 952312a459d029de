"""RLOO: reinforcement learning from a reward model, with a KL penalty to the reference.

For each prompt the policy samples k completions; the reward model scores them; each completion's
advantage is its reward minus the mean reward of the *other* k-1 (the leave-one-out baseline,
Ahmadian et al. 2024), which needs no value network -- the memory-light successor of PPO for
LLMs. The reward is reduced by beta * KL(policy || reference): without it the policy drifts
toward whatever text the reward model over-rates (reward hacking) and away from fluent language.
The reference is the base model with the LoRA adapter switched off.

The reward function is this project's `RewardScorer`, so rewards during training are computed
exactly as everywhere else in the app. The job measures, on (up to 16 of) its prompts, the mean
reward-model score of answers sampled at the training temperature (4 seeded draws per prompt,
base and adapter with the same seeds) -- the expected reward that RLOO maximises -- and of greedy
answers, which a small KL-limited update often leaves unchanged.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import knobs
from pipelines.engine import adapters
from pipelines.engine.sampling import InvalidParameter, SamplingParams
from pipelines.knobs import knob
from pipelines.store.jobs import JobContext, Phase
from pipelines.train import reward, training
from pipelines.train.align import common, evaluate
from pipelines.train.job import TrainingJob

MEASURE_PROMPTS = 16
MEASURE_SAMPLES = 4


@dataclass
class RLOOSpec(training.SpecDict):
    out: str = training.out_knob("adapters", "Adapter name")
    reward_model: str = knob(help="the reward model that scores the samples", label="Reward model", metavar="NAME")
    prompts: str | None = knob(
        None,
        help="a file with a 'prompt' column: text or messages (default: the prompts in the store)",
        label="Prompts",
        metavar="FILE",
    )
    base_model: str | None = training.base_model_knob()
    beta: float = knob(
        0.05,
        help="KL coefficient: how strongly the policy is held near the reference",
        label="KL β",
        low=0,
        high=10,
        step=0.01,
        slider=False,
    )
    max_steps: int = training.max_steps_knob(30)
    learning_rate: float = training.learning_rate_knob(1e-4)
    num_generations: int = knob(
        4,
        help="completions sampled per prompt",
        label="Samples per prompt (k)",
        low=2,
        high=64,
        step=1,
        why="the baseline needs the others",
    )
    prompts_per_step: int = knob(2, help="prompts per optimizer step", label="Prompts per step", low=1, high=64, step=1)
    max_completion_length: int = knob(
        64,
        help="longest sampled completion in tokens",
        label="Completion length",
        low=4,
        high=4096,
        step=1,
        slider=False,
    )
    temperature: float = knob(
        1.0,
        help="sampling temperature of the completions",
        label="Sampling temperature",
        low=0,
        high=2,
        low_open=True,
        step=0.05,
        why="RLOO needs varied samples",
    )
    lora_r: int = training.lora_r_knob(16)
    lora_alpha: int = training.lora_alpha_knob(32)
    seed: int = training.seed_knob()
    overwrite: bool = training.overwrite_knob()

    def __post_init__(self) -> None:
        knobs.check(self)
        training.check_output_name(self.out)


def check(spec: RLOOSpec) -> list:
    """Everything that can be checked before a job starts: the reward model, the prompts, the name."""
    common.check_new_adapter(spec.out, spec.overwrite)
    try:
        reward.meta(spec.reward_model)
    except reward.RewardModelError as error:
        raise InvalidParameter("reward_model", str(error)) from error
    return common.load_prompts(spec.prompts)


def reward_function(name: str):
    """A trl reward function backed by the trained reward model."""
    scorer = reward.scorer(name)

    def reward_model(prompts, completions, **_: Any) -> list[float]:
        scores = []
        for prompt, completion in zip(prompts, completions, strict=False):
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            scores.append(scorer.score(messages, [text])[0])
        return scores

    return reward_model


class RLOOJob(TrainingJob):
    kind = "rloo"

    def phases(self) -> Sequence[Phase]:
        return (
            Phase("prepare", "Prepare: prompts, policy, reward model"),
            Phase("train", "Train: sample, score, update", unit="steps"),
            Phase("measure", "Measure: mean reward of base vs tuned", unit="passes"),
        )

    def target(self) -> Path:
        return adapters.adapter_path(self.spec.out)

    def prepare_data(self) -> None:
        spec = self.spec
        self.prompts = check(spec)
        self.ctx.info(
            f"{len(self.prompts)} prompts; reward model {spec.reward_model}; base {self.base.name} on {self.base.device} "
            f"({self.base.precision.reason}); beta={spec.beta}, {spec.num_generations} samples per prompt, "
            f"{spec.prompts_per_step} prompts per step"
        )

    def prepare_model(self) -> None:
        from datasets import Dataset
        from trl import RLOOConfig, RLOOTrainer

        spec = self.spec
        model, self.tokenizer = common.load_policy(self.base.source, self.base.device)
        self.build_trainer(
            RLOOTrainer,
            RLOOConfig,
            planned=spec.max_steps,
            has_eval=False,
            arguments=common.sampling_arguments(spec),
            model=model,
            reward_funcs=reward_function(spec.reward_model),
            train_dataset=Dataset.from_list([{"prompt": common.as_json(p)} for p in self.prompts]),
            processing_class=self.tokenizer,
            peft_config=common.lora_config(spec.lora_r, spec.lora_alpha),
        )

    def meta(self) -> dict[str, Any]:
        spec = self.spec
        source = spec.prompts.rsplit("/", 1)[-1] if spec.prompts else "store"
        return {"data": {"source": source, "prompts": len(self.prompts)}, "reward_model": spec.reward_model}

    def published(self, target: Path) -> dict[str, Any]:
        """The expected reward RLOO maximises, of base and tuned model, measured on the published adapter
        (the policy's trainer is dropped first: the measurement loads the serving model)."""
        from pipelines.engine import models

        spec, ctx = self.spec, self.ctx
        self.trainer = None
        gc.collect()
        measure_on = self.prompts[:MEASURE_PROMPTS]
        sampled_total = len(measure_on) * MEASURE_SAMPLES
        ctx.phase(
            "measure",
            total=sampled_total + len(measure_on),
            note=f"{len(measure_on)} prompts answered by base and tuned model: {MEASURE_SAMPLES} samples each at "
            f"temperature {spec.temperature}, then greedy; scored by {spec.reward_model}",
        )
        handle = models.load_handle(self.base.model_id)
        sampled = evaluate.evaluate(
            handle,
            spec.out,
            spec.reward_model,
            measure_on,
            SamplingParams(temperature=spec.temperature, max_new_tokens=spec.max_completion_length, seed=spec.seed),
            samples=MEASURE_SAMPLES,
            progress=lambda done, _total: _advance(ctx, done),
        )
        greedy = evaluate.evaluate(
            handle,
            spec.out,
            spec.reward_model,
            measure_on,
            SamplingParams(temperature=0, max_new_tokens=spec.max_completion_length),
            progress=lambda done, _total: _advance(ctx, sampled_total + done),
        )
        start, end = sampled["mean_reward_base"], sampled["mean_reward_adapter"]
        metrics = {
            "mean_reward_start": start,
            "mean_reward_end": end,
            "win_rate": sampled["win_rate"],
            "measured_on": sampled["n"],
            "greedy_mean_reward_start": greedy["mean_reward_base"],
            "greedy_mean_reward_end": greedy["mean_reward_adapter"],
            "greedy_win_rate": greedy["win_rate"],
        }
        ctx.info(
            f"mean reward (sampled) {start:+.4f} -> {end:+.4f}, win rate vs base {sampled['win_rate']:.2f}; "
            f"greedy {greedy['mean_reward_base']:+.4f} -> {greedy['mean_reward_adapter']:+.4f}"
        )
        seconds = time.time() - self.started
        common.update_meta(target, {"metrics": metrics, "seconds": seconds})
        return {**metrics, "seconds": seconds}


def run(spec: RLOOSpec, ctx: JobContext) -> dict[str, Any]:
    return RLOOJob(spec, ctx).run()


def _advance(ctx: JobContext, done: int) -> None:
    ctx.advance(done)
    ctx.check()


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Job-runner entry point (kind "rloo")."""
    return run(RLOOSpec.from_dict(ctx.spec), ctx)
