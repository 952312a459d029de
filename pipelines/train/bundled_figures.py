"""The bundled results' figures, recomputed: what docs/teaching.md quotes and a test checks.

Kept apart from `bundled` (where the results are, which the pickers read) because measuring needs
the whole model stack: the reward scorer, evaluation, the SFT data reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelines.config import BUNDLED_MODEL
from pipelines.engine.bundled import locate


def _data_file(meta: dict[str, Any]) -> str:
    """The bundled data file it was trained on (recorded as given on the command line)."""
    from pipelines.config import DATASETS

    return str(DATASETS / Path(meta["hyperparameters"]["data"]).name)


def _held_out_pairs(meta: dict[str, Any]) -> list[dict[str, Any]]:
    from pipelines.train import reward

    hp = meta["hyperparameters"]
    rows, _ = reward.load_pairs(reward.RewardSpec(out="measure", data=_data_file(meta), skip_bad_rows=True))
    return reward.split_by_prompt(rows, hp["eval_fraction"], hp["seed"])[1]


def policy(path: Path) -> tuple[Any, Any]:
    """The bundled base model in fp32 with the adapter on top (switch it off for the base)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.engine.model_source import resolve_source

    source, _ = resolve_source(BUNDLED_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(source)
    base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(path)).eval(), tokenizer


# kind -> figures(path, meta) for results of wings above this one (GRPO's, in the reasoning wing):
# their callers pass them in, so this module never imports upward
Measurers = Mapping[str, Callable[[Path, dict[str, Any]], dict[str, float]]]


def measure(name: str, measurers: Measurers | None = None) -> dict[str, float]:
    """Recompute a bundled result's figures on its own held-out data (the split its job made).

    - a fine-tuned adapter: loss per answer token on the held-out questions, base vs adapter, and
      perplexity on general text (the forgetting probe);
    - a reward model: accuracy and mean margin on held-out pairs (prompts never seen in training);
    - a DPO adapter: the implicit reward margin beta * [(log pi - log pi_ref)(chosen) -
      (log pi - log pi_ref)(rejected)] on held-out pairs, and how often it is positive (the base
      model's own margin is 0 by definition).
    """
    from pipelines.train import evaluation, sft_data

    path = locate(name)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    hp = meta["hyperparameters"]
    if meta["kind"] in (measurers or {}):
        return (measurers or {})[meta["kind"]](path, meta)
    if meta["kind"] == "reward":
        from pipelines.train import reward

        report = reward.evaluate_pairs(reward.RewardScorer(name, path), _held_out_pairs(meta))
        return {"held_out_accuracy": report["accuracy"], "held_out_margin": report["mean_margin"]}
    if meta["kind"] == "distill":
        return _student_figures(path)
    model, tokenizer = policy(path)
    if meta["kind"] == "dpo":
        margins = []
        for row in _held_out_pairs(meta):
            diff = []
            for side in ("chosen", "rejected"):
                text = row[side][-1]["content"]
                policy_logp, _ = evaluation.completion_logprob(model, tokenizer, row["prompt"], text)
                with model.disable_adapter():
                    reference, _ = evaluation.completion_logprob(model, tokenizer, row["prompt"], text)
                diff.append(policy_logp - reference)
            margins.append(hp["beta"] * (diff[0] - diff[1]))
        return {
            "implicit_margin": sum(margins) / len(margins),
            "implicit_accuracy": sum(m > 0 for m in margins) / len(margins),
        }
    data = sft_data.load_file(_data_file(meta))
    problems = data.problems + sft_data.check_lengths(data, tokenizer, hp["max_length"])
    conversations = sft_data.accept(data, problems, skip_bad_rows=hp["skip_bad_rows"])
    examples = sft_data.to_examples(sft_data.split(conversations, hp["eval_fraction"], hp["seed"])[1])
    general = evaluation.general_text()
    figures = {
        "held_out_loss_after": evaluation.held_out_loss(model, tokenizer, examples),
        "general_perplexity_after": evaluation.text_perplexity(model, tokenizer, general),
    }
    with model.disable_adapter():
        figures["held_out_loss_before"] = evaluation.held_out_loss(model, tokenizer, examples)
        figures["general_perplexity_before"] = evaluation.text_perplexity(model, tokenizer, general)
    return figures


def _student_figures(path: Path) -> dict[str, float]:
    """A distilled student against its teacher on its held-out answers and on general text, before
    distillation (the cut model alone) and after."""
    from pipelines.engine.model_source import resolve_source
    from pipelines.train import distill

    source, _ = resolve_source(BUNDLED_MODEL)
    student, tokenizer, _ = distill.load_student(path, source)
    teacher, _ = distill.load_teacher(source)
    conversations = distill.held_out(path)
    figures = {f"{k}_after": v for k, v in distill.closeness(teacher, student, tokenizer, conversations).items()}
    with student.disable_adapter():
        before = distill.closeness(teacher, student, tokenizer, conversations)
    return figures | {f"{k}_before": v for k, v in before.items()}


def record(name: str, reproduce: str, measurers: Measurers | None = None) -> dict[str, Any]:
    """Write the command that made a bundled result and its measured figures into its meta.json."""
    from pipelines.store.files import write_atomic

    path = locate(name)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    data = meta["hyperparameters"].get("data")
    if data:
        meta["hyperparameters"]["data"] = f"assets/datasets/{Path(data).name}"  # not the maintainer's own path
    meta["bundled"] = {"reproduce": reproduce, "figures": measure(name, measurers)}
    write_atomic(path / "meta.json", json.dumps(meta, indent=2, default=float))
    return meta["bundled"]
