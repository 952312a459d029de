"""Controls shared by several tabs, built in one place.

The sidebar's sampling panel is a single set of components that Generate, Chat and the other tabs
all read, so a setting changed once applies everywhere. Compare builds a second panel from the same
builder for its "B" configuration.
"""

from __future__ import annotations

import html
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from pipelines import knobs
from pipelines.config import ASSETS, get_settings
from pipelines.engine import scheduler
from pipelines.engine.openai_engine import KNOB_OFF
from pipelines.engine.sampling import SamplingParams, format_stop, parse_stop

from .errors import UserError
from .spec_controls import bind, build_spec, control


def _model_concurrency() -> int:
    """How many model requests Gradio lets in at once (every event that runs the model shares one group).

    With the scheduler (pipelines/engine/scheduler.py), twice as many as it has decoding slots: enough to
    keep every slot busy and show the next ones their place in its queue; the scheduler, not Gradio,
    bounds the work. Without it (PLAYGROUND_BATCHING=0, or the llama.cpp engine, whose one context
    re-reads a sequence whenever another stream interleaves), requests decode on their own under the
    model lock, so only a few at once. Beyond the limit, requests wait in Gradio's own queue
    (app.QUEUE_MAX), which shows its position too.
    """
    settings = get_settings()
    return 2 * settings.batch_rows if settings.batching and settings.engine == "torch" else 4


MODEL_CONCURRENCY = _model_concurrency()
MODEL_EVENTS: dict[str, Any] = {"concurrency_id": "model", "concurrency_limit": MODEL_CONCURRENCY}
PARAM_NAMES = tuple(knobs.knobs(SamplingParams))  # the order of the panel, the API and `inputs`


@dataclass
class SamplingControls:
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    top_k: gr.Slider
    top_p: gr.Slider
    min_p: gr.Slider
    repetition_penalty: gr.Slider
    seed: gr.Number
    stop: gr.Textbox

    @property
    def inputs(self) -> list[gr.components.Component]:
        return list(self.kwargs().values())

    def kwargs(self, prefix: str = "") -> dict[str, Any]:
        """`inputs_kwargs` for an event: handlers take the settings by name, and so does the API."""
        return {f"{prefix}{name}": getattr(self, name) for name in PARAM_NAMES}

    @property
    def filters(self) -> list[Any]:
        """The knobs that reshape the distribution (the inspector re-renders when they move)."""
        return [self.temperature, self.top_k, self.top_p, self.min_p, self.repetition_penalty]

    @property
    def engine_knobs(self) -> list[gr.components.Component]:
        """The knobs a remote engine may not support (pipelines.engine.openai_engine.KNOB_OFF), in that order."""
        return [getattr(self, name) for name in KNOB_OFF]

    @staticmethod
    def updates_for(settings: dict[str, Any]) -> list[Any]:
        """gr.update values for `inputs`, applying the subset of settings given (e.g. a preset)."""
        shown = {**settings, "stop": format_stop(settings["stop"])} if "stop" in settings else settings
        return [gr.update(value=shown[name]) if shown.get(name) is not None else gr.update() for name in PARAM_NAMES]


def to_params(values: dict[str, Any], prefix: str = "") -> SamplingParams:
    """SamplingParams from handler keyword arguments, raised as a clear UI error (naming the control) if invalid."""
    missing = [prefix + name for name in PARAM_NAMES if prefix + name not in values]
    if missing:
        raise UserError(f"Invalid setting — {', '.join(missing)} missing")
    return build_spec(SamplingParams, values, prefix, parse={"stop": parse_stop})


def sampling_controls(defaults: SamplingParams | None = None, *, label_prefix: str = "") -> SamplingControls:
    """The sampling panel, derived from `SamplingParams`' knobs (Compare's "B" panel is a second one)."""
    d = defaults or SamplingParams()
    made = {
        name: control(
            SamplingParams, name, value=getattr(d, name), label=f"{label_prefix}{knobs.label(SamplingParams, name)}"
        )
        for name in PARAM_NAMES
        if name != "stop"
    }
    stop = gr.Textbox(
        value=format_stop(d.stop), lines=2, label=f"{label_prefix}Stop strings", info="one per line; \\n = newline"
    )
    return SamplingControls(**made, stop=bind(SamplingParams, "stop", stop))


def engine_knob_updates(handle: Any) -> list[Any]:
    """For `SamplingControls.engine_knobs`: a knob the remote server cannot honour is disabled, set off,
    and says why (a request that sets it anyway is refused naming it); others are left as they are."""
    server = handle.remote_server
    unsupported = server.unsupported() if server is not None else {}
    return [
        gr.update(interactive=False, value=KNOB_OFF[name], info=f"not on this engine: {unsupported[name]}")
        if name in unsupported
        else gr.update()
        for name in KNOB_OFF
    ]


def fill_when_model_ready(demo: gr.Blocks, fn: Callable[..., Any], inputs: Any, outputs: Any) -> None:
    """Run `fn` on every page load, where it may wait for the model: what it fills needs the weights.

    The server answers while the model still loads in the background (models.load_in_background),
    so components that depend on the loaded model are built disabled and filled here; the
    components show a running timer meanwhile, so nobody mistakes the wait for a hang.
    """
    demo.load(fn, inputs, outputs, show_progress="minimal", api_visibility="private")


def skipped_rows(errors: Sequence[dict[str, Any]], shown: int = 20) -> str:
    """Row problems of an imported file, under its summary line: how many, and the first few by line."""
    if not errors:
        return ""
    lines = "  \n".join(f"line {e['line']}: {html.escape(str(e['error']))}" for e in errors[:shown])
    return f" {len(errors)} rows skipped:  \n{lines}"


def nothing_added(errors: Sequence[dict[str, Any]], what: str) -> str:
    """Why a file added nothing: its first bad rows, or that it has none."""
    if not errors:
        return f"No {what} added: the file has no rows."
    return f"No {what} added: every row has a problem." + skipped_rows(errors, shown=5)


def rounded(value: Any, digits: int = 3) -> float | None:
    """A number for a table cell: rounded, and empty where nothing was measured."""
    return None if value is None else round(float(value), digits)


def how_it_works(name: str, title: str = "How it works") -> gr.Accordion:
    """The tab's teaching panel, from `assets/howto/<name>.md`."""
    with gr.Accordion(title, open=False) as panel:
        gr.Markdown((ASSETS / "howto" / f"{name}.md").read_text(encoding="utf-8"), latex_delimiters=[])
    return panel


class StopFlags:
    """Stop for streaming handlers: the Stop button raises a flag that the stream checks between tokens.

    Cancelling a streaming event from the page (`cancels=`) races its last updates: the server
    keeps yielding until the cancel lands, and those updates overwrite whatever Stop showed (a
    page kept saying "generating…", a reply could overwrite the next message). Here the stream
    ends itself and its last update says it was stopped. Each run gets an id (kept in the page's
    gr.State) before it is queued, so a Stop pressed while the run still waits for its turn
    applies to it too: the run then ends before it shows anything.
    """

    def __init__(self, keep: int = 1024) -> None:
        self._runs: OrderedDict[str, dict[str, bool]] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def new_run(self) -> str:
        run_id = uuid.uuid4().hex
        with self._lock:
            self._runs[run_id] = {"stop": False, "started": False}
            while len(self._runs) > self._keep:  # bounded: old runs are forgotten
                self._runs.popitem(last=False)
        return run_id

    def begin(self, run_id: str | None) -> bool:
        """The run starts streaming; False when Stop came first (then it must end at once, showing nothing)."""
        with self._lock:
            run = self._runs.get(run_id or "")
            if run is None:
                return True
            run["started"] = True
            return not run["stop"]

    def stop(self, run_id: str | None) -> bool:
        """Ask the run to stop; True when it had started (it will end itself), False when it never will start."""
        with self._lock:
            run = self._runs.get(run_id or "")
            if run is None:
                return False
            run["stop"] = True
            return run["started"]

    def stopped(self, run_id: str | None) -> bool:
        with self._lock:
            run = self._runs.get(run_id or "")
            return bool(run and run["stop"])


STOPS = StopFlags()


class Throttle:
    """At most one page update per `seconds`, and always the last one.

    A stream makes tokens faster than a browser draws them; every update is a websocket message
    and a re-render, so streaming handlers send ~10-20 per second and always the final state.
    When many rows decode at once (a class on one instance), the updates of all streams together
    stay under `UPDATES_PER_SECOND`: each update costs the server Python time that the shared
    decode step would otherwise get, and a student reading along needs no more than a few per second.
    """

    UPDATES_PER_SECOND = 30.0

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self._last = -float("inf")
        self._seen: tuple = ()

    def due(self, final: bool = False, rows: Sequence[Any] = ()) -> bool:
        """Whether to send an update now; with `rows` (Completions), news is never held back:
        a row's first token, or a new place in the scheduler's queue, goes out at once."""
        now = time.monotonic()
        news = False
        if rows:
            seen = tuple((bool(r.tokens), r.queue_position) for r in rows)
            news, self._seen = seen != self._seen, seen
        interval = max(self.seconds, scheduler.rows_in_flight() / self.UPDATES_PER_SECOND)
        if final or news or now - self._last >= interval:
            self._last = now
            return True
        return False


def waiting_note(rows: Sequence[Any]) -> str:
    """What a person sees while their request waits for one of the model's decoding slots ("" once it runs)."""
    ahead = [r.queue_position for r in rows if r.queue_position is not None and not r.tokens]
    return waiting_text(min(ahead)) if ahead else ""


def waiting_text(ahead: int) -> str:
    who = "you are next" if ahead == 0 else f"{ahead} request{'s' if ahead != 1 else ''} ahead of you"
    return f"⏳ Waiting for a free slot on the model ({who})…"


INSTANT: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", "concurrency_limit": None}


def stoppable(triggers: list[Any], stop: gr.Button) -> tuple[Any, gr.State]:
    """A run id for each start (`triggers`), and `stop` wired to it; returns (the id event, the id State).

    The streaming handler is chained with `.success` on the returned event and takes the State
    as an input; it checks `STOPS.stopped(run_id)` between updates.
    """
    run_id = gr.State(None)
    started = gr.on(triggers, STOPS.new_run, None, run_id, **INSTANT)
    stop.click(STOPS.stop, run_id, None, **INSTANT)
    return started, run_id


def cleared_first(triggers: list[Any], outputs: list[Any]) -> Any:
    """Empty `outputs` at once, before a handler (chained with `.then`) that may refuse its input.

    A refused upload must not leave the previous file's summary standing as if it were this one's.
    """
    return gr.on(triggers, lambda: tuple(None for _ in outputs) if len(outputs) > 1 else None, None, outputs, **INSTANT)


def show_token(text: str) -> str:
    """A token made visible: spaces and line breaks would otherwise vanish in labels."""
    return text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def token_html(text: str) -> str:
    """A token inside running text: its line breaks shown as ⏎ and then one real break, however many it holds
    (a "\n\n" token drew a tall box of stacked ⏎)."""
    return html.escape(text.replace("\n", "⏎")) + ("<br>" if "\n" in text else "")


# --- starting a job from a form ---------------------------------------------------------------------
#
# A slider's number box takes any number typed into it; when it loses focus the slider sets it back
# to its nearest allowed value (5000 -> 256). The typed value's error toast came from another event,
# and Start then queued a job with 256 (issue 42, W7). The page remembers which boxes it set back
# (`RANGE_WATCH_JS`, in the page's head), and each Start sends what the form shows out of range, or
# set back since, to its handler, which refuses once, naming them.

RANGE_WATCH_JS = """
<script>
for (const kind of ['change', 'blur']) {  // caught on the way down, before the box's own handler sets it back
  document.addEventListener(kind, (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== 'number') return;
    if (box.validity.rangeOverflow || box.validity.rangeUnderflow) box.dataset.typedOutOfRange = box.value;
  }, true);
}
document.addEventListener('input', (event) => {
  const box = event.target;  // only the person typing again clears it, not the page setting the value back
  if (event.isTrusted && box instanceof HTMLInputElement && box.type === 'number') delete box.dataset.typedOutOfRange;
}, true);
</script>
"""


def shown_out_of_range_js(container_id: str, slot: int) -> str:
    """`js=` for a Start button: fills input `slot` with the number boxes in #`container_id` that show a
    value outside their range, or were set back from one since it was typed (then forgotten: a second
    Start goes ahead with what the form now shows); empty when there is none."""
    return f"""(...args) => {{
  const root = document.getElementById({container_id!r}) || document;
  const named = (box) => (box.getAttribute('aria-label') || 'a number').replace('number input for ', '');
  const range = (box) => `${{box.min || '…'}} to ${{box.max || '…'}}`;
  const found = [];
  for (const box of root.querySelectorAll('input[type=number]')) {{
    if (box.offsetParent === null) continue;
    if (box.validity.rangeOverflow || box.validity.rangeUnderflow) {{
      found.push(`${{named(box)}} shows ${{box.value}}, outside ${{range(box)}}`);
    }} else if (box.dataset.typedOutOfRange !== undefined) {{
      found.push(`${{named(box)}} was typed as ${{box.dataset.typedOutOfRange}}, outside ${{range(box)}}, and set back to ${{box.value}}`);
      delete box.dataset.typedOutOfRange;
    }}
  }}
  args[{slot}] = found.join('; ');
  return args;
}}"""


def refuse_out_of_range(shown: str | None) -> None:
    """Nothing starts while the form shows a value it would not use."""
    if shown and shown.strip():
        raise UserError(
            f"Not started: {shown}. Check the value and press Start again (a value outside its range is never "
            "used: the form keeps the nearest allowed one).",
            title="Not started",
        )


def on_submit(
    button: gr.Button,
    fn: Callable[..., Any],
    inputs: list[Any],
    outputs: Any,
    *,
    form: str,
    settings: dict[str, Any],
    api_name: str,
) -> Any:
    """A Start (or Save) button of a form: `fn` gets `inputs`, then what the form #`form` shows out of range
    (a hidden input the browser fills, `shown`: the handler refuses with `refuse_out_of_range`), then the
    settings by name."""
    return button.click(
        fn,
        [*inputs, gr.Textbox(visible=False)],
        outputs,
        inputs_kwargs=settings,
        js=shown_out_of_range_js(form, len(inputs)),
        api_name=api_name,
    )
