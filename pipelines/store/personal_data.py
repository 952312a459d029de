"""Personal data in text that is about to be stored for good (issue 38, safety and data): a RAG
document before it is indexed, a fine-tuning file before a model learns it. A model trained on a
phone number can repeat it; an index serves it to whoever asks.

What is found, and how (each a library or a public list, kept small enough to explain):

- **e-mail addresses**: a pattern (local part @ domain with a dot), as every scanner has;
- **phone numbers**: Google's libphonenumber (`phonenumbers`), which knows every country's
  numbering plan and accepts only numbers that are *valid* there: numbers written with +country
  anywhere, others read as numbers of `PLAYGROUND_PHONE_REGION` (default US), grouped as that
  country writes them (a bare run of digits only with its +country: it is more often an id);
- **payment card numbers**: 13-19 digits that start as the card networks' do (2-6) and pass the
  Luhn checksum;
- **people's names**: a first name from the US census lists (the `names` package's 1990 census
  files: the 3,175 first names borne by at least 3 in 100,000 people, 88,799 surnames) followed by a capitalised word that is a census
  surname, or a title (Mr, Mrs, Ms, Dr, Prof) followed by a capitalised word. A heuristic: it
  misses names the census did not list and a name written alone, and can flag a capitalised
  phrase that happens to look like one ("Will Power"). Real PII scanners use a trained NER model
  for this; none installs offline here.

Findings are reported with the value masked (the report itself must not leak what it found).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("email", "phone", "card", "name")
DESCRIBED = {"email": "e-mail address", "phone": "phone number", "card": "payment card number", "name": "person's name"}
EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# two capitalised words; a lookahead, so "Contact Mary Johnson" is read as both pairs
WORD_PAIR = re.compile(r"\b(?=([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\s+([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b)")
TITLED = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b")
MAX_CHARS = 2_000_000  # a scan reads at most this much of a text (bounded time on a huge upload)
EXAMPLES = 3  # masked examples kept per kind


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    masked: str


def _census_file(name: str) -> Path | None:
    """A list file of the `names` package, found without importing it."""
    spec = importlib.util.find_spec("names")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / name
        if path.is_file():
            return path
    return None


@functools.cache
def _census(*files: str, min_percent: float = 0.0) -> frozenset[str]:
    """Names from census list files (NAME percent cumulative rank per line), those at least that common."""
    found: set[str] = set()
    for name in files:
        path = _census_file(name)
        if path is None:
            continue
        for line in path.read_text(encoding="ascii").splitlines():
            fields = line.split()
            if len(fields) >= 2 and float(fields[1]) >= min_percent:
                found.add(fields[0].capitalize())
    return frozenset(found)


def first_names() -> frozenset[str]:
    """First names borne by at least 3 in 100,000 people: Niki stays, Golden and China go (the
    rarest ones are mostly words, and flag "Golden Gate")."""
    return _census("dist.male.first", "dist.female.first", min_percent=0.003)


def surnames() -> frozenset[str]:
    return _census("dist.all.last")


def _mask(value: str) -> str:
    """Enough to recognise the kind, not the value: j…@e….com, +…58, M… J… (no asterisks: the UI's
    Markdown would read them as emphasis)."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}…@{domain[:1]}…{domain[domain.rfind('.') :]}"
    digits = [c for c in value if c.isdigit()]
    if len(digits) >= 7:
        return f"{'+' if value.lstrip().startswith('+') else ''}…{''.join(digits[-2:])}"
    return " ".join(f"{part[:1]}…" for part in value.split())


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _phones(text: str) -> list[tuple[int, int]]:
    import phonenumbers

    from pipelines.config import get_settings

    region = get_settings().phone_region
    # STRICT_GROUPING: digits grouped as that country writes them (24824-24837 is not a number);
    # a bare run of digits counts only with its +country (2147483647 is more often an id than a phone)
    matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.STRICT_GROUPING)
    return [(m.start, m.end) for m in matcher if m.raw_string.startswith("+") or not m.raw_string.isdigit()]


def _names(text: str) -> list[tuple[int, int]]:
    first, last = first_names(), surnames()
    spans = [(m.start(), m.end(2)) for m in WORD_PAIR.finditer(text) if m.group(1) in first and m.group(2) in last]
    spans += [(m.start(), m.end()) for m in TITLED.finditer(text)]
    return spans


def scan(text: str) -> list[Finding]:
    """Every finding in the text (its first MAX_CHARS characters), in order, overlaps kept once."""
    text = (text or "")[:MAX_CHARS]
    spans: list[tuple[int, int, str]] = [(m.start(), m.end(), "email") for m in EMAIL.finditer(text)]
    spans += [(start, end, "phone") for start, end in _phones(text)]
    spans += [
        (m.start(), m.end(), "card")
        for m in CARD.finditer(text)
        if 13 <= len(digits := re.sub(r"\D", "", m.group())) <= 19 and digits[0] in "23456" and _luhn(digits)
    ]
    spans += [(start, end, "name") for start, end in _names(text)]
    found: list[Finding] = []
    taken_until = -1
    for start, end, kind in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
        if start < taken_until:  # a card number is not also a phone number
            continue
        found.append(Finding(kind, start, end, _mask(text[start:end])))
        taken_until = end
    return found


def summary(findings: list[Finding]) -> dict[str, Any]:
    """{"counts": {kind: n}, "examples": {kind: [masked, ...]}, "total": n} (kinds with none left out)."""
    counts = Counter(f.kind for f in findings)
    examples: dict[str, list[str]] = {}
    for finding in findings:
        shown = examples.setdefault(finding.kind, [])
        if len(shown) < EXAMPLES and finding.masked not in shown:
            shown.append(finding.masked)
    return {
        "counts": {kind: counts[kind] for kind in KINDS if counts[kind]},
        "examples": examples,
        "total": len(findings),
    }


def described(report: dict[str, Any]) -> str:
    """'2 e-mail addresses (j…@e….com), 1 phone number (…12)' — for a line in the UI or CLI."""
    parts = []
    for kind, count in report["counts"].items():
        noun = DESCRIBED[kind] + ("" if count == 1 else "s" if not DESCRIBED[kind].endswith("s") else "es")
        noun = noun.replace("person's names", "people's names")
        parts.append(f"{count} {noun} ({', '.join(report['examples'][kind])})")
    return ", ".join(parts)


def redact(text: str, findings: list[Finding] | None = None) -> str:
    """The text with each finding replaced by its kind in brackets: [EMAIL], [PHONE], [CARD], [NAME]."""
    findings = scan(text) if findings is None else findings
    out, at = [], 0
    for finding in findings:
        out.append(text[at : finding.start])
        out.append(f"[{finding.kind.upper()}]")
        at = finding.end
    out.append(text[at:])
    return "".join(out)
