"""Checked steps: a question a lesson step asks, and how the app knows the answer.

A check is data in the lesson file (`"check": {...}` on a step). Its answer is either written in
the file (multiple choice) or computed from the model the class is using, so it cannot go stale
when the model, the adapter or the tokenizer changes:

- `{"question", "choices": [...], "answer"}`: one of the choices.
- `{"question", "compute": "probability", "prompt", "token", "tolerance", "relative"?}`: the
  probability the model gives `token` right after `prompt` (`inside.score`), within `tolerance`
  (or within `relative` of it: a share, for a small probability); a student may write 0.31, 31%
  or 5.5e-5.
- `{"question", "compute": "lens_layer", "prompt", "token"}`: the first layer (0 = the first block)
  whose logit-lens reading at the prompt's last position is `token` (`inside.lens`).
- `{"question", "compute": "lora_params", "lora_r", "targets"}`: how many parameters LoRA trains at
  that rank on those layers (`finetune.lora_trainable`), exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.errors import PlaygroundError

COMPUTED = ("probability", "lens_layer", "lora_params")
MAX_ANSWER_CHARS = 200


class CheckError(PlaygroundError, ValueError):
    """A lesson's check that cannot be used, or an answer that cannot be read."""


@dataclass(frozen=True)
class Expected:
    """What a check accepts: a choice, or a number with its tolerance."""

    value: str | float
    tolerance: float = 0.0
    relative: float = 0.0  # a share of the value, for answers whose scale is small

    def accepts(self, answer: str) -> bool:
        if isinstance(self.value, str):
            return answer.strip().casefold() == self.value.casefold()
        return abs(read_number(answer) - self.value) <= max(self.tolerance, self.relative * abs(self.value))

    def shown(self) -> str:
        if isinstance(self.value, str):
            return self.value
        if self.value == int(self.value) and self.tolerance == 0 and self.relative == 0:
            return f"{int(self.value):,}"
        spread = max(self.tolerance, self.relative * abs(self.value))
        return f"{self.value:.3g} (± {spread:.2g})"


def validate(check: Any, where: str) -> None:
    """A check must be one of the kinds above, complete; `where` names the lesson and step."""
    if not isinstance(check, dict) or not str(check.get("question", "")).strip():
        raise CheckError(f"{where}: a check is an object with a question")
    if "choices" in check:
        choices = check.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or check.get("answer") not in choices:
            raise CheckError(f"{where}: a multiple-choice check needs 2 or more choices and an answer among them")
        return
    kind = check.get("compute")
    if kind not in COMPUTED:
        raise CheckError(f"{where}: a check has choices, or compute: one of {', '.join(COMPUTED)}")
    needed = {
        "probability": ("prompt", "token", "tolerance"),
        "lens_layer": ("prompt", "token"),
        "lora_params": ("lora_r", "targets"),
    }
    missing = [key for key in needed[kind] if key not in check]
    if missing:
        raise CheckError(f"{where}: a {kind} check needs {', '.join(missing)}")
    if kind == "probability" and not (0 < float(check["tolerance"]) < 1 and 0 <= float(check.get("relative", 0)) < 1):
        raise CheckError(f"{where}: tolerance is a probability between 0 and 1, relative a share below 1")


def expected(check: dict[str, Any], handle: Any, adapter: str | None = None) -> Expected:
    """The answer a check accepts, computed from `handle` (and the class's adapter) where it is computed."""
    if "choices" in check:
        return Expected(str(check["answer"]))
    from pipelines import inside

    kind = check["compute"]
    if kind == "probability":
        scored = inside.score(handle, check["prompt"], check["token"], adapter=adapter)
        return Expected(float(scored["prob"]), float(check["tolerance"]), float(check.get("relative", 0)))
    if kind == "lens_layer":
        report = inside.lens(handle, check["prompt"], adapter=adapter)
        target = handle.tokenizer(check["token"], add_special_tokens=False)["input_ids"]
        if len(target) != 1:
            raise CheckError(f"the lens check's token {check['token']!r} is {len(target)} tokens; it must be one")
        layer = next((n for n, row in enumerate(report["layers"]) if row[-1]["id"] == target[0]), None)
        if layer is None:
            raise CheckError(f"no layer of this model predicts {check['token']!r} after {check['prompt']!r}")
        return Expected(float(layer))
    from pipelines.train.finetune import lora_trainable

    return Expected(float(lora_trainable(handle.base_model, int(check["lora_r"]), list(check["targets"]))))


def read_number(answer: str) -> float:
    """A student's number: 0.31, 31%, 1,234 or 1e-3."""
    text = str(answer).strip().replace(",", "").replace("_", "")
    scale = 1.0
    if text.endswith("%"):
        text, scale = text[:-1].strip(), 0.01
    try:
        value = float(text) * scale
    except ValueError:
        raise CheckError(f"{str(answer)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise CheckError(f"{str(answer)[:40]!r} is not a number")
    return value
