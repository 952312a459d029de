"""Numbers for before/after comparisons: loss, perplexity, ROUGE-L, BLEU, and a forgetting probe.

ROUGE-L and BLEU come from metric modules in `evaluate`'s format that ship with the project
(`pipelines/train/metrics/`) and are loaded by path, because `evaluate.load("rouge")` needs the Hub.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch

from pipelines.config import DATASETS
from pipelines.errors import InvalidParameter

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
GENERAL_TEXT = DATASETS / "general_text.txt"


@cache
def load_metric(name: str):
    """An `evaluate` metric module shipped in pipelines/train/metrics/<name>/<name>.py."""
    import evaluate

    script = METRICS_DIR / name / f"{name}.py"
    if not script.is_file():
        raise InvalidParameter("metric", f"no metric module {name!r} in {METRICS_DIR}")
    return evaluate.load(str(script))


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-L (F1, 0-1) and corpus BLEU (0-100) of predictions against references."""
    if not predictions:
        return {"rougeL": float("nan"), "bleu": float("nan")}
    logging.getLogger("absl").setLevel(
        logging.WARNING
    )  # rouge-score's tokenizer announces itself at INFO in the job log
    rouge = load_metric("rouge_l").compute(predictions=list(predictions), references=list(references))
    bleu = load_metric("bleu").compute(predictions=list(predictions), references=list(references))
    return {"rougeL": float(rouge["rougeL"]), "bleu": float(bleu["bleu"])}


def perplexity_of(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return float(math.exp(min(loss, 50.0)))


@torch.inference_mode()
def text_perplexity(model: Any, tokenizer: Any, text: str, *, window: int = 256, stride: int = 128) -> float:
    """Perplexity of plain text under `model` with a sliding window (each token scored once).

    `model` is called with input_ids and labels, so a PEFT model (LoRA or prompt tuning) works
    as is; a general-text sample measured before and after fine-tuning shows forgetting.
    """
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    device = next(model.parameters()).device
    total_nll, total_tokens, previous_end = 0.0, 0, 0
    for begin in range(0, ids.shape[1], stride):
        end = min(begin + window, ids.shape[1])
        target_len = end - previous_end
        chunk = ids[:, begin:end].to(device)
        labels = chunk.clone()
        labels[:, :-target_len] = -100
        out = model(input_ids=chunk, labels=labels)
        scored = int((labels[:, 1:] != -100).sum())
        total_nll += float(out.loss) * scored
        total_tokens += scored
        previous_end = end
        if end == ids.shape[1]:
            break
    return float(math.exp(total_nll / max(total_tokens, 1)))


def greedy_answers(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    max_new_tokens: int,
    progress: Callable[[int], None] | None = None,
    batch: int = 8,
) -> list[str]:
    """The model's greedy answer to each conversation (chat template, left-padded batches), as decoded
    text; `progress(done)` after each batch. For jobs that hold a raw (PEFT) model rather than a handle."""
    answers: list[str] = []
    for start in range(0, len(conversations), batch):
        chunk = conversations[start : start + batch]
        texts = [tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True) for c in chunk]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        answers += [tokenizer.decode(row, skip_special_tokens=True) for row in out[:, encoded["input_ids"].shape[1] :]]
        if progress is not None:
            progress(len(answers))
    return answers


def general_text() -> str:
    return GENERAL_TEXT.read_text(encoding="utf-8")


def _ids(encoded: Any) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


@torch.inference_mode()
def completion_logprob(
    model: Any, tokenizer: Any, prompt: Sequence[dict[str, str]], completion: str
) -> tuple[float, int]:
    """(log p(completion | prompt), its token count) under the chat template, as trl masks it.

    The completion's tokens are the chat template over prompt + reply, minus the template with
    the generation prompt: exactly the tokens supervised fine-tuning puts its loss on, and the
    ones DPO's implicit reward sums over, end-of-turn token included.
    """
    prompt_ids = _ids(tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True))
    full_ids = _ids(
        tokenizer.apply_chat_template(list(prompt) + [{"role": "assistant", "content": completion}], tokenize=True)
    )
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([full_ids], device=device)).logits[0, :-1].float()
    targets = torch.tensor(full_ids[1:], device=device)
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
    scored = logprobs[len(prompt_ids) - 1 :]
    return float(scored.sum()), int(scored.numel())


def held_out_loss(model: Any, tokenizer: Any, examples: Sequence[dict[str, Any]]) -> float:
    """Mean loss per completion token over prompt/completion examples (token-weighted)."""
    total, count = 0.0, 0
    for example in examples:
        logprob, n = completion_logprob(model, tokenizer, example["prompt"], example["completion"][-1]["content"])
        total, count = total - logprob, count + n
    return total / max(count, 1)
