"""Each setting is defined once, as a knob on its spec; the CLI's flags and the UI's controls must agree with it.

The test walks every spec that a person can set from both the command line and the app, and fails
when a field has no knob, a knob has no flag or no control (without a stated reason), or a flag's
or control's range lets through a value the spec refuses, or refuses one it allows.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import fields

import gradio as gr
import pytest

from pipelines import knobs
from pipelines.cli import build_parser
from pipelines.cli.common import UsageError
from pipelines.engine.sampling import SamplingParams
from pipelines.errors import InvalidParameter
from pipelines.inside import ArchitectureSpec, AttentionSpec
from pipelines.inside.compression import AdapterCostSpec, CompressSpec, PruneSpec, StudentSpec
from pipelines.inside.data_quality import QualitySpec
from pipelines.inside.drift import DriftSpec
from pipelines.inside.encoders import MaskingSpec
from pipelines.inside.steering import SteerSpec
from pipelines.labels.drives import DriveSettings
from pipelines.lessons.workshops import WorkshopSpec
from pipelines.rag.chunking import ChunkSpec
from pipelines.rag.retrieval import SearchSpec
from pipelines.reasoning.benchmark import BenchmarkSpec
from pipelines.reasoning.grpo import GRPOSpec
from pipelines.reasoning.react import ReActSpec
from pipelines.reasoning.solve import SampleSpec
from pipelines.train.align.constitution import ConstitutionSpec
from pipelines.train.align.dpo import DPOSpec
from pipelines.train.align.rloo import RLOOSpec
from pipelines.train.classify import ClassifySpec
from pipelines.train.distill import DistillSpec
from pipelines.train.finetune import FinetuneSpec
from pipelines.train.instruction_mix import MixSpec
from pipelines.train.reward import RewardSpec
from pipelines.train.scale import ScaleSpec
from playground.spec_controls import bound_controls, spec_kwargs

# each spec, and the command (words before the flags) whose flags set it; None: the command's flags
# keep meanings of their own (`inside attention --layer` is required, `--head` absent means the mean,
# `--context` absent means the model's window, `reason bench --limit` absent means every problem),
# and the pipeline checks the value against the spec when it runs
SPECS: dict[type, list[str] | None] = {
    SamplingParams: ["generate"],
    FinetuneSpec: ["finetune"],
    RewardSpec: ["reward", "train"],
    DPOSpec: ["align", "dpo"],
    RLOOSpec: ["align", "rloo"],
    GRPOSpec: ["align", "grpo"],
    ClassifySpec: ["classify", "train"],
    DriveSettings: ["prefs", "drive", "create"],
    ChunkSpec: ["rag", "ingest"],
    SearchSpec: ["rag", "query"],
    SampleSpec: ["reason", "run"],
    BenchmarkSpec: None,
    AttentionSpec: None,
    ArchitectureSpec: None,
    SteerSpec: ["inspect", "steer"],
    WorkshopSpec: ["workshop", "create"],
    ScaleSpec: ["scale"],
    MaskingSpec: None,
    QualitySpec: None,
    CompressSpec: ["compress"],
    PruneSpec: None,
    AdapterCostSpec: None,
    StudentSpec: None,
    DistillSpec: ["distill"],
    DriftSpec: None,
    MixSpec: None,
    ConstitutionSpec: None,
    ReActSpec: None,
}
IDS = [spec.__name__ for spec in SPECS]
CLI_SPECS = [spec for spec, words in SPECS.items() if words]


def _subparser(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser(words)
    for word in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def _accepts(spec: type, name: str, value) -> bool:
    try:
        knobs.coerce(spec, name, value)
        return True
    except InvalidParameter:
        return False


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_field_is_a_knob_with_help(spec):
    settings = knobs.knobs(spec)
    assert [f.name for f in fields(spec)] == list(settings), "a field without knob(...) has no help, range or label"
    for name, k in settings.items():
        assert k.help.strip(), f"{spec.__name__}.{name} has no help text"
        if k.low is not None and k.high is not None:
            assert k.low < k.high, f"{spec.__name__}.{name}: empty range"


@pytest.mark.parametrize("spec", CLI_SPECS, ids=[spec.__name__ for spec in CLI_SPECS])
def test_every_knob_has_a_flag_that_checks_its_range(spec):
    parser = _subparser(SPECS[spec])
    by_dest = {a.dest: a for a in parser._actions}
    for name, k in knobs.knobs(spec).items():
        if k.cli is not None:
            continue
        assert name in by_dest, f"{spec.__name__}.{name} has no flag in `{' '.join(SPECS[spec])}`"
        action = by_dest[name]
        if k.choices is not None:
            assert tuple(action.choices) == k.choices
        kind, _ = knobs.kinds(spec)[name]
        if kind not in (int, float) or action.type is None:
            continue
        flag = action.option_strings[0]
        for bound, is_open, outward in ((k.low, k.low_open, -1), (k.high, k.high_open, +1)):
            if bound is None:
                continue
            if not is_open:
                assert action.type(repr(bound) if kind is float else str(int(bound))) == bound
            beyond = bound + outward * (1 if kind is int else max(abs(bound) * 1e-6, 1e-9))
            if beyond in k.special:
                continue
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(repr(beyond) if kind is float else str(int(beyond)))
        # and the whole parser refuses it on one line naming the flag
        if k.high is not None:
            value = str(int(k.high) + 1) if kind is int else repr(k.high * 2 + 1)
            with pytest.raises(UsageError, match=flag):
                parser.parse_args([flag, value])


@pytest.fixture(scope="module")
def app_controls():
    import app as app_module

    demo = app_module.build_app("tiny")
    return bound_controls(demo)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_knob_has_a_control_with_the_specs_range(spec, app_controls):
    for name, k in knobs.knobs(spec).items():
        found = app_controls.get((spec, name), [])
        if k.ui is not None:
            assert not found, f"{spec.__name__}.{name} says the UI has no control ({k.ui}), but it has one"
            continue
        assert found, f"{spec.__name__}.{name} has no control in the app"
        for component in found:
            if k.choices is not None and isinstance(component, (gr.Radio, gr.Dropdown)):
                assert [c[1] if isinstance(c, tuple) else c for c in component.choices] == list(k.choices)
            if not isinstance(component, (gr.Slider, gr.Number)):
                continue
            low, high = component.minimum, component.maximum
            step = getattr(component, "step", None) or 1
            where = f"{spec.__name__}.{name} ({component.label})"
            for end in (low, high):
                if end is not None and end != k.ui_none:
                    assert _accepts(spec, name, end), f"{where}: the control offers {end}, which the spec refuses"
            # nothing the spec accepts lies beyond the control's ends (up to one step)
            if k.high is not None:
                assert high is not None, f"{where}: no maximum, the spec's is {k.high}"
                assert not _accepts(spec, name, high + step), f"{where}: the spec accepts more than the control offers"
            if k.ui_none is not None:  # below the stand-in for None is None too: nothing there is refused
                assert low is None and spec_kwargs(spec, {name: k.ui_none - 5}) == {name: None}
            elif k.low is not None and not (k.low_open and low is None):
                assert low is not None, f"{where}: no minimum, the spec's is {k.low}"
                beyond = low - step
                if beyond != k.ui_none and not math.isclose(beyond, k.ui_none or math.inf):
                    assert not _accepts(spec, name, beyond) or beyond in k.special, (
                        f"{where}: the spec accepts less than the control offers"
                    )
            value = component.value
            if value is not None and value != k.ui_none:
                assert _accepts(spec, name, value), f"{where}: its default {value} is refused by the spec"
