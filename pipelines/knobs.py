"""One definition per setting: a dataclass field carries its default, help, range and label.

The specs of sampling and of every training job declare their fields with `knob(...)`, as trl's
configs do with `field(metadata={"help": ...})`. From that one place come the validation
(`check`), the command line's flags (`pipelines.cli.common.add_spec_flags`) and the UI's controls
(`playground.spec_controls`), so a range, a default or a help text is written once and cannot
disagree between the three. Torch-free: storage and the CLI's help import it.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from pipelines.errors import InvalidParameter


@dataclass(frozen=True)
class Knob:
    """What a setting means, beside its default: shown as CLI help, UI label and info, and checked."""

    help: str
    label: str = ""  # the UI's name for it; default: the field name, spelled out
    info: str | None = None  # the UI's one-liner under the label when it differs from `help` (a narrow sidebar)
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is not allowed (e.g. top-p > 0)
    high_open: bool = False
    special: Mapping[Any, str] = field(default_factory=dict)  # values outside the range that mean something
    choices: tuple[str, ...] | None = None
    why: str = ""  # appended to a refusal: why the range is what it is
    step: float | None = None  # the UI's granularity (a slider when both bounds are set)
    flag: str | None = None  # the CLI's flag when it is not --field-name (kept for older scripts)
    ui: str | None = None  # None: the UI has a control; otherwise why it has none
    cli: str | None = None  # None: the CLI has a flag; otherwise why it has none
    slider: bool = True  # False: a number box even though the range is bounded
    ui_none: Any = None  # what a UI number shows for None (a box cannot be empty): -1 = "random"; below it too
    metavar: str | None = None  # the CLI's placeholder (FILE, NAME)

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None


def knob(default: Any = MISSING, *, default_factory: Any = MISSING, **meaning: Any) -> Any:
    """A dataclass field with its meaning attached (see `Knob` for the keywords)."""
    return field(default=default, default_factory=default_factory, metadata={"knob": Knob(**meaning)})


def knob_of(f: Field) -> Knob | None:
    return f.metadata.get("knob")


def knobs(spec_class: type) -> dict[str, Knob]:
    """The spec's settings in declaration order (fields without a knob are not settings)."""
    return {f.name: k for f in fields(spec_class) if (k := knob_of(f)) is not None}


def label(spec_class: type, name: str) -> str:
    k = knobs(spec_class).get(name)
    if k is None:
        return name
    return k.label or name.replace("_", " ").capitalize()


def default(spec_class: type, name: str) -> Any:
    f = next(f for f in fields(spec_class) if f.name == name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


@functools.cache
def kinds(spec_class: type) -> dict[str, tuple[type, bool]]:
    """Each field's base type (int, float, bool, str, list) and whether None is allowed."""
    out = {}
    for name, hint in typing.get_type_hints(spec_class).items():
        args = typing.get_args(hint)
        optional = type(None) in args
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint) or hint
        out[name] = (list if origin in (list, tuple) else origin, optional)
    return out


def describe(k: Knob) -> str:
    """The allowed values in words, as refusals and help texts say them."""
    if k.choices is not None:
        return f"one of {', '.join(k.choices)}"
    special = " or ".join(f"{_num(v)} ({meaning})" for v, meaning in k.special.items())
    if k.low is None and k.high is None:
        text = ""
    elif k.high is None:
        text = f"above {_num(k.low)}" if k.low_open else f"at least {_num(k.low)}"
    elif k.low is None:
        text = f"below {_num(k.high)}" if k.high_open else f"at most {_num(k.high)}"
    elif not k.low_open and not k.high_open:
        text = f"between {_num(k.low)} and {_num(k.high)}"
    else:
        text = f"in {'(' if k.low_open else '['}{_num(k.low)}, {_num(k.high)}{')' if k.high_open else ']'}"
    return " or ".join(t for t in (special, text) if t)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def in_range(k: Knob, value: float) -> bool:
    if value in k.special:
        return True
    if k.low is not None and (value <= k.low if k.low_open else value < k.low):
        return False
    if k.high is not None and (value >= k.high if k.high_open else value > k.high):
        return False
    return True


def coerce(spec_class: type, name: str, value: Any) -> Any:
    """The value in the field's type, or InvalidParameter naming the field (no silent truncation)."""
    kind, optional = kinds(spec_class)[name]
    k = knobs(spec_class).get(name)
    if value is None:
        if optional:
            return None
        raise InvalidParameter(name, "is required")
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidParameter(name, f"must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParameter(name, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise InvalidParameter(name, f"must be finite, got {value!r}")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise InvalidParameter(name, f"must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if k is not None and not in_range(k, value):
            why = f" ({k.why})" if k.why else ""
            raise InvalidParameter(name, f"must be {describe(k)}, got {_num(value)}{why}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise InvalidParameter(name, f"must be text, got {value!r}")
        if k is not None and k.choices is not None and value not in k.choices:
            raise InvalidParameter(name, f"must be {describe(k)}, got {value!r}")
        return value
    return value


def check(spec: Any) -> None:
    """Coerce and range-check every knob of a spec in place (called from its `__post_init__`)."""
    for name in knobs(type(spec)):
        value = coerce(type(spec), name, getattr(spec, name))
        object.__setattr__(spec, name, value)  # frozen specs too


def check_names(param: str, chosen: Iterable[str], allowed: Iterable[str], *, at_least_one: bool = True) -> None:
    """A list setting whose items are names from a fixed set (variants, tasks, principles): each known,
    and at least one chosen."""
    allowed, chosen = list(allowed), list(chosen)
    strangers = [name for name in chosen if name not in allowed]
    if strangers:
        raise InvalidParameter(param, f"unknown {', '.join(map(str, strangers))}; choose among {', '.join(allowed)}")
    if at_least_one and not chosen:
        raise InvalidParameter(param, f"choose at least one of {', '.join(allowed)}")


def checked_lines(text: str | None, param: str, *, fewest: int, most: int, max_chars: int) -> list[str]:
    """A box of one item per line (prompts to compare, to critique): the non-empty lines, stripped,
    refused when too few, too many, or one is too long."""
    items = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(items) < fewest:
        wanted = "give at least one prompt" if fewest == 1 else f"needs at least {fewest} prompts"
        raise InvalidParameter(param, f"{wanted}, one per line" + (f" (got {len(items)})" if fewest > 1 else ""))
    if len(items) > most:
        raise InvalidParameter(param, f"at most {most} prompts, got {len(items)}")
    long = next((number for number, item in enumerate(items, 1) if len(item) > max_chars), None)
    if long is not None:
        raise InvalidParameter(param, f"line {long} is longer than {max_chars:,} characters")
    return items


def unknown(spec_class: type, names: Iterable[str]) -> list[str]:
    known = {f.name for f in fields(spec_class)}
    return sorted(set(names) - known)
