"""Pulling the final numeric answer out of a model's free text.

Models state answers in many shapes: "The answer is 27.", "$1,750", "1,750.00", "Answer: 16",
"#### 16", "\\boxed{3/4}", "16 eggs", "twelve". Explicit answer markers win; otherwise the last
number in the text, which is where chain-of-thought puts its conclusion. A scorer that misses
answers would make a strategy look worse than it is, so this is tested against a table of real
phrasings.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_NUMBER = r"[-+−]?\s?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s+\d+/\d+|\s*/\s*\d+)?%?"
NUMBER_RE = re.compile(rf"(?<![\w.]){_NUMBER}(?![\d])")
_MARKERS = [
    re.compile(r"\\boxed\{([^{}]*)\}"),
    re.compile(r"####\s*([^\n]*)"),
    re.compile(r"answer\s*(?:is|=|:)\s*:?\s*([^\n]*)", re.IGNORECASE),
    re.compile(r"(?:result|total)\s+is\s*:?\s*([^\n]*)", re.IGNORECASE),
]
WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "hundred": 100,
}
_WORD_RE = re.compile(r"\b(" + "|".join(WORDS) + r")\b", re.IGNORECASE)


def parse_number(token: str) -> float | None:
    """'$1,750.00' -> 1750.0, '3/4' -> 0.75, '1 1/2' -> 1.5, '−5' -> -5.0, '25%' -> 25.0."""
    text = token.replace("−", "-").replace("$", "").replace(",", "").replace("%", "").strip()
    text = re.sub(r"^([-+])\s+", r"\1", text)
    try:
        if " " in text and "/" in text:  # a mixed number
            whole, frac = text.split(None, 1)
            sign = -1 if whole.startswith("-") else 1
            return float(int(whole) + sign * Fraction(frac.replace(" ", "")))
        if "/" in text:
            return float(Fraction(text.replace(" ", "")))
        value = float(text)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None


def _first_number(text: str) -> float | None:
    match = NUMBER_RE.search(text)
    if match:
        return parse_number(match.group())
    word = _WORD_RE.search(text)
    return float(WORDS[word.group(1).lower()]) if word else None


def extract_answer(text: str | None) -> float | None:
    """The answer as a float, or None when the text holds no number ("no answer")."""
    if not text or not isinstance(text, str):
        return None
    for marker in _MARKERS:
        matches = list(marker.finditer(text))
        for match in reversed(matches):  # the last stated answer is the final one
            value = _first_number(match.group(1))
            if value is not None:
                return value
    numbers = list(NUMBER_RE.finditer(text))
    if numbers:
        return parse_number(numbers[-1].group())
    words = list(_WORD_RE.finditer(text))
    return float(WORDS[words[-1].group(1).lower()]) if words else None


def from_value(value: object) -> float | None:
    """A PAL program's return value as a number: numbers as they are, strings parsed, others None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        return extract_answer(value)
    if isinstance(value, list) and len(value) == 1:
        return from_value(value[0])
    return None


def is_correct(predicted: float | None, gold: float | None) -> bool:
    if predicted is None or gold is None:
        return False
    return math.isclose(predicted, gold, rel_tol=1e-6, abs_tol=1e-6)


def format_number(value: float | None) -> str:
    if value is None:
        return "no answer"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"
