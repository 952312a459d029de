"""UI controls derived from a spec's knobs (`pipelines.knobs`): label, info, default and range written once.

A slider's ends are the validator's (an open bound moves in by one step), so no control offers a
value the spec refuses, and none hides one it accepts. Each control built here, or handed over
with `bind` when a tab builds it itself (a file picker, layer names known only once the model is
loaded), carries the spec field it sets, so a test can check that every setting has a control and
that the two agree. Values come back by name (`inputs_kwargs`), become the spec's types in
`spec_kwargs`, and a refusal names the control's label.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import gradio as gr

from pipelines import knobs
from pipelines.errors import InvalidParameter

from .errors import UserError

T = TypeVar("T")

BOUND = "spec_field"  # the attribute naming (spec class, field) on a bound component


def bind(spec_class: type, name: str, component: Any) -> Any:
    """Mark a hand-built component as the control of `spec_class.name`."""
    if name not in knobs.knobs(spec_class):
        raise KeyError(f"{spec_class.__name__} has no setting {name!r}")
    bound = getattr(component, BOUND, ())
    setattr(component, BOUND, (*bound, (spec_class, name)))
    return component


def ui_bounds(k: knobs.Knob) -> tuple[float | None, float | None]:
    """The control's ends: the validator's, moved in by one step where the bound itself is refused."""
    low, high = k.low, k.high
    if low is not None and k.low_open:
        low = low + k.step if k.step else None
    if high is not None and k.high_open:
        high = round(high - k.step, 10) if k.step else None
    if k.special and low is not None:
        low = min(low, *k.special)  # e.g. max steps -1 = "use epochs"
    return low, high


def control(spec_class: type, name: str, *, value: Any = None, **options: Any) -> Any:
    """The control of one setting; `options` pass through to the component (visible, scale, elem_id …)."""
    k = knobs.knobs(spec_class)[name]
    kind, _ = knobs.kinds(spec_class)[name]
    if value is None:
        value = knobs.default(spec_class, name)
    if value is None and k.ui_none is not None:
        value = k.ui_none
    info = k.info if k.info is not None else k.help
    if k.ui_none is not None and k.info is None:
        info += f" ({k.ui_none} = none)"
    common: dict[str, Any] = {"label": knobs.label(spec_class, name), "info": info, **options}
    component: gr.components.Component
    if k.choices is not None:
        component = gr.Radio(list(k.choices), value=value, **common)
    elif kind is bool:
        component = gr.Checkbox(value=bool(value), **common)
    elif kind in (int, float):
        low, high = ui_bounds(k)
        if k.ui_none is not None:
            low = None  # the stand-in for None and anything below it mean None (a seed of -5: random)
        step = k.step or (1 if kind is int else None)
        if k.bounded and k.slider and low is not None and high is not None:
            component = gr.Slider(low, high, value=value, step=step, **common)
        else:
            number: dict[str, Any] = {"precision": 0} if kind is int else {}
            if step is not None:
                number["step"] = step
            component = gr.Number(value=value, minimum=low, maximum=high, **number, **common)
    else:
        component = gr.Textbox(value="" if value is None else str(value), **common)
    return bind(spec_class, name, component)


def controls(spec_class: type, names: Iterable[str], **options: dict[str, Any]) -> dict[str, Any]:
    """Several controls in order; `options[name]` passes through to that one."""
    return {name: control(spec_class, name, **options.get(name, {})) for name in names}


def spec_kwargs(spec_class: type, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The spec's keyword arguments from an event's values (`inputs_kwargs` named `prefix + field`).

    Gradio hands numbers back as floats (or None when a box is emptied); the spec's own types are
    restored here, and the UI's stand-in for None (`ui_none`) becomes None again.
    """
    out: dict[str, Any] = {}
    for name, k in knobs.knobs(spec_class).items():
        key = prefix + name
        if key not in values:
            continue
        value = values[key]
        kind, optional = knobs.kinds(spec_class)[name]
        if k.ui_none is not None and isinstance(value, (int, float)) and value <= k.ui_none:
            value = None
        elif value in ("", None) and kind in (int, float):
            if not optional:
                raise UserError(f"{knobs.label(spec_class, name)}: enter a number.")
            value = None
        elif kind is str and isinstance(value, str):
            value = value.strip()
        out[name] = value
    return out


def build_spec(
    spec_class: type,
    values: Mapping[str, Any],
    prefix: str = "",
    *,
    parse: Mapping[str, Callable[[Any], Any]] | None = None,
    **fixed: Any,
) -> Any:
    """The spec from an event's values (`parse` turns a control's text into its field's value first),
    a refusal shown with the control's label."""

    def build() -> Any:
        given = dict(values)
        for name, parser in (parse or {}).items():
            given[prefix + name] = parser(given.get(prefix + name))
        return spec_class(**spec_kwargs(spec_class, given, prefix), **fixed)

    return named(spec_class, build)


def named(spec_class: type, fn: Callable[[], T]) -> T:
    """`fn()`, its refusal naming the control a person sees: the one place a field's name becomes a label."""
    try:
        return fn()
    except InvalidParameter as error:
        raise refusal(spec_class, error) from error


def refusal(spec_class: type, error: InvalidParameter) -> UserError:
    """A spec's refusal, naming the control a person sees instead of the field's name."""
    message = str(error).removeprefix(f"{error.param}: ")
    name = knobs.label(spec_class, error.param) if error.param in knobs.knobs(spec_class) else error.param
    return UserError(f"{name}: {message}")


def bound_controls(blocks: gr.Blocks) -> dict[tuple[type, str], list[Any]]:
    """Every control of the app that sets a spec field (for the tests, and for anyone auditing the UI)."""
    found: dict[tuple[type, str], list[Any]] = {}
    for block in blocks.blocks.values():
        for key in getattr(block, BOUND, ()):
            found.setdefault(key, []).append(block)
    return found


def with_spec_parameters(
    fn: Callable[..., Any], spec_class: type, names: Sequence[str], extra: Mapping[str, tuple[Any, Any]] | None = None
) -> Callable[..., Any]:
    """`fn(own..., **settings)` as an API endpoint whose parameters after `fn`'s own are the spec's
    fields `names` (typed and defaulted by the spec: one definition) and `extra` (name -> (type, default)).

    Gradio reads an endpoint's parameters from its signature and calls it with positional values;
    the wrapper binds them to the names and calls `fn` with keywords.
    """
    own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    hints = typing.get_type_hints(fn)
    field_types = typing.get_type_hints(spec_class)
    defaults = spec_class()
    added = {name: (field_types[name], getattr(defaults, name)) for name in names} | dict(extra or {})
    signature = inspect.Signature(
        [
            *own,
            *(
                inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d, annotation=t)
                for n, (t, d) in added.items()
            ),
        ],
        return_annotation=hints.get("return", inspect.Signature.empty),
    )

    @functools.wraps(fn)
    def endpoint(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return fn(**bound.arguments)

    endpoint.__signature__ = signature  # type: ignore[attr-defined]
    endpoint.__annotations__ = {
        **{p.name: hints.get(p.name, Any) for p in own},
        **{n: t for n, (t, _) in added.items()},
    }
    endpoint.__annotations__["return"] = hints.get("return", Any)
    return endpoint
