"""Reasoning tab: one question under direct, chain-of-thought and PAL prompting side by side, and a benchmark."""

from __future__ import annotations

import html
import json
import secrets
import time
from typing import Any

import gradio as gr
import pandas as pd

from pipelines.engine import models
from pipelines.reasoning import benchmark, extract, solve, strategies
from pipelines.reasoning.solve import StrategyResult
from pipelines.replay import record

from . import capsule_files, history
from . import react as react_panel
from .controls import MODEL_EVENTS, STOPS, Throttle, how_it_works, stoppable, to_params, waiting_text
from .errors import UserError
from .guard import signed_in
from .pickers import LiveDropdown
from .sidebar import Shared, selected_adapter
from .spec_controls import build_spec, control

UI_UPDATE_SECONDS = 0.15
KEYS = strategies.KEYS
BENCH_COLUMNS = ["strategy", "accuracy", "correct", "n", "no answer", "mean tokens", "mean seconds"]


def bundled_problems() -> list[dict[str, Any]]:
    return benchmark.load_problems()[0]


def pick_problem(label: str | None):
    for number, problem in enumerate(bundled_problems(), start=1):
        if label == _label(number, problem):
            return problem["question"], extract.format_number(problem["answer"])
    return gr.update(), gr.update()


def parse_gold(value: float | str | None) -> float | None:
    """The known answer, or None when the box is blank.

    A text box rather than gr.Number: an empty Number reaches the handler as 0 from the browser, which marked
    every answer to a typed-in question "wrong (expected 0)".
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    number = extract.parse_number(text)
    if number is None:
        raise UserError(
            f"Known answer {text[:40]!r} is not a number (e.g. 42, 3.5, 3/4, $1,200); leave it blank if unknown."
        )
    return number


def _label(number: int, problem: dict[str, Any]) -> str:
    text = problem["question"]
    return f"{number}. {text[:70]}{'…' if len(text) > 70 else ''}"


def _strategies(keys: list[str], prompt_texts: dict[str, str]) -> list[strategies.Strategy]:
    if not keys:
        raise UserError("Tick at least one strategy.")
    return [strategies.parse(k, prompt_texts[k]) for k in KEYS if k in keys]


def _summary(result: StrategyResult | None, gold: float | None, *, stopped: bool = False) -> str:
    if result is None:
        return "<span class='muted'>not run</span>"
    if not result.done:
        tokens = sum(s.tokens for s in result.samples)
        if stopped:
            return f"<span class='muted'>⏹ stopped by you after {tokens} tokens</span>"
        if result.queue_position is not None:
            return f"<span class='muted'>{waiting_text(result.queue_position)}</span>"
        if all(s.finish_reason for s in result.samples):
            waiting = (
                "running the program in the sandbox" if result.strategy == "pal" else "waiting for the other strategies"
            )
            return f"<span class='muted'>finished ({tokens} tokens) · {waiting}…</span>"
        return f"<span class='muted'>generating… {tokens} tokens</span>"
    verdict = ""
    if gold is not None:
        verdict = " ✅ right" if result.correct else f" ❌ wrong (expected {extract.format_number(gold)})"
    lines = [
        f"**Answer: {extract.format_number(result.answer)}**{verdict}",
        f"<span class='muted'>{result.mean_tokens:.0f} tokens · {result.seconds:.1f} s · prompt {result.prompt_tokens} tokens</span>",
    ]
    if result.votes:
        lines.append(
            "Votes: "
            + " · ".join(f"`{html.escape(k)}` × {v}" for k, v in sorted(result.votes.items(), key=lambda kv: -kv[1]))
        )
    if result.notice:
        lines.append(f"⚠️ {html.escape(result.notice)}")
    return "  \n".join(lines)


def _program_report(result: StrategyResult | None) -> tuple[str, str]:
    if result is None or not result.done or result.program is None:
        return "", ""
    run = result.samples[0].run or {}
    if run.get("ok"):
        report = f"✅ `solution()` returned `{html.escape(json.dumps(run.get('result'))[:200])}` in {run.get('seconds', 0):.2f} s"
    else:
        report = f"❌ {html.escape(str(run.get('error')))}"
    if run.get("stdout"):
        report += f"  \nPrinted: `{html.escape(run['stdout'][:300])}`"
    if run.get("protections"):
        report += f"  \n<span class='muted'>sandbox: {html.escape(', '.join(run['protections']))}</span>"
    return result.program, report


def run_strategies(
    question: str,
    gold: float | str | None,
    keys: list[str],
    samples: float,
    direct_prompt: str,
    cot_prompt: str,
    pal_prompt: str,
    adapter: str | None = None,
    run_id: str | None = None,
    **sampling: Any,
):
    """Stream the three columns: output, summary, and (PAL) program and sandbox report; Stop ends it (run_id).
    A run that finished also leaves its replay capsule (for *Save capsule*)."""
    chosen = _strategies(keys, {"direct": direct_prompt, "cot": cot_prompt, "pal": pal_prompt})
    params = to_params(sampling)
    gold = parse_gold(gold)
    solve.check_inputs(question, int(samples), params)
    if params.seed is None and not params.greedy:  # sampled rows are replayable only from the seed they had
        params = params.with_seed(secrets.randbelow(2**31))
    throttle = Throttle(UI_UPDATE_SECONDS)
    handle, chosen_adapter = models.get_handle(), selected_adapter(adapter)
    stream = solve.stream_solve(
        handle, question, chosen, params, samples=int(samples), gold=gold, adapter=chosen_adapter
    )
    for results in stream:
        stopped = STOPS.stopped(run_id)
        finished = all(r.done for r in results)
        if throttle.due(final=finished or stopped):
            by_key = {r.strategy: r for r in results}
            outputs = []
            for key in KEYS:
                result = by_key.get(key)
                outputs += [result.output if result else "", _summary(result, gold, stopped=stopped)]
            program, report = _program_report(by_key.get("pal"))
            if finished:
                capsule = record.reasoning(
                    handle, question, chosen, params, results, samples=int(samples), adapter=chosen_adapter
                )
                yield *outputs, program, report, {"results": [r.to_json() for r in results]}, capsule
            else:
                yield *outputs, program, report, gr.skip(), gr.skip()
        if stopped:  # the stream ends itself: its last update says so (a cancelled one would keep "generating…")
            stream.close()
            return


def reset_prompt(key: str) -> str:
    return json.dumps(strategies.load(key).to_json(), indent=2, ensure_ascii=False)


def _bench_table(summary: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = [
        [
            key,
            f"{row['accuracy']:.1%}",
            row["correct"],
            row["n"],
            row["no_answer"],
            row["mean_tokens"],
            row["mean_seconds"],
        ]
        for key, row in summary.items()
    ]
    return pd.DataFrame(rows, columns=BENCH_COLUMNS)


def _items_table(record: dict[str, Any]) -> pd.DataFrame:
    keys = record.get("strategies", [])
    rows = []
    for number, item in enumerate(record.get("items", []), start=1):
        row = [number, item["question"], extract.format_number(item["answer"])]
        for key in keys:
            r = item["results"].get(key, {})
            row.append(("✅ " if r.get("correct") else "❌ ") + extract.format_number(r.get("answer")))
        rows.append(row)
    return pd.DataFrame(rows, columns=["#", "question", "expected", *keys])


def _run_note(record: dict[str, Any], running: bool = False) -> str:
    done = f"{len(record.get('items', []))} of {record.get('total')}"
    status = f"running: {done} done" if running else "complete" if record.get("complete") else f"stopped after {done}"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("created", 0)))
    adapter = f" + {record['adapter']}" if record.get("adapter") else ""
    return (
        f"Run `{record.get('id')}` ({when}) — {html.escape(str(record.get('model')))}{html.escape(adapter)}, "
        f"{html.escape(str(record.get('data')))}, {record.get('samples')} sample(s) per strategy, {status}."
    )


def saved_run_choices() -> list[tuple[str, str]]:
    out = []
    for run in benchmark.list_runs():
        accuracy = ", ".join(f"{k} {v['accuracy']:.0%}" for k, v in (run.get("summary") or {}).items())
        out.append((f"{run['id']} · {run.get('data')} · {run['done']}/{run.get('total')} · {accuracy}", run["id"]))
    return out


@signed_in("run and save benchmarks")
def run_benchmark(
    source: str,
    file: str | None,
    limit: float,
    keys: list[str],
    samples: float,
    adapter: str | None = None,
    run_id: str | None = None,
    progress: gr.Progress = gr.Progress(),
    request: gr.Request | None = None,
    **settings: Any,
):
    """Run and save a benchmark; `settings` are the strategies' prompts (`direct_prompt`, `cot_prompt`,
    `pal_prompt`, as the API names them) and the sidebar's sampling settings."""
    sampling = dict(settings)
    chosen = _strategies(keys, {key: sampling.pop(f"{key}_prompt", "") for key in KEYS})
    params = to_params(sampling)
    if int(samples) > 1 and params.temperature == 0:
        raise UserError("Self-consistency needs a temperature above 0 (sidebar).")
    if source == "Upload JSONL":
        if not file:
            raise UserError('Upload a JSONL file of {"question", "answer"} rows.')
        problems, errors = benchmark.load_problems(file)
        name = file.rsplit("/", 1)[-1]
    else:
        problems, errors = benchmark.load_problems()
        name = "problems.jsonl"
    if not problems:
        raise UserError("No usable problems" + (f": line {errors[0]['line']}: {errors[0]['error']}" if errors else "."))
    chosen_limit = build_spec(benchmark.BenchmarkSpec, {"limit": limit}).limit
    problems = problems[:chosen_limit]
    progress(0, desc=f"0 / {len(problems)} problems")
    if errors:
        gr.Warning(f"{len(errors)} rows skipped; first: line {errors[0]['line']}: {errors[0]['error']}")
    record: dict[str, Any] = {}
    for record in benchmark.iter_run(
        models.get_handle(),
        problems,
        chosen,
        params,
        samples=int(samples),
        adapter=selected_adapter(adapter),
        data_name=name,
        should_stop=lambda: STOPS.stopped(run_id),
    ):
        done = len(record["items"])
        progress(done / len(problems), desc=f"{done} / {len(problems)} problems")
        yield _bench_table(record["summary"]), _items_table(record), _run_note(record, running=True), gr.skip()
    yield (
        _bench_table(record["summary"]),
        _items_table(record),
        _run_note(record),
        gr.update(choices=saved_run_choices(), value=record["id"]),
    )


def load_saved_run(run_id: str | None):
    if not run_id:
        raise UserError("Choose a saved run.")
    record = benchmark.load_run(run_id)
    return _bench_table(record.get("summary", {})), _items_table(record), _run_note(record)


def item_detail(run_id: str | None, evt: gr.SelectData):
    """The full outputs of one benchmark item, for the row clicked in the drill-down table."""
    if not run_id:
        return gr.skip()
    record = benchmark.load_run(run_id)
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    if not 0 <= row < len(record["items"]):
        return gr.skip()
    item = record["items"][row]
    parts = [f"**{html.escape(item['question'])}** — expected {extract.format_number(item['answer'])}"]
    for key, r in item["results"].items():
        parts.append(
            f"\n**{key}** → {extract.format_number(r['answer'])} {'✅' if r['correct'] else '❌'}\n\n```text\n{r['output']}\n```"
        )
        if r.get("error"):
            parts.append(f"sandbox: {html.escape(str(r['error']))}")
    return "\n".join(parts)


RUN_FIELDS = (
    "question",
    "gold",
    "keys",
    *(f"{key}_{part}" for key in KEYS for part in ("output", "summary")),
    "program",
    "program_report",
    "raw",
)


def keep_run(*values: Any) -> list:
    """The history with this run (question, strategies and every column's output) newest."""
    *parts, stored = values
    data = dict(zip(RUN_FIELDS, parts, strict=True))
    if not data["question"] or not any(data[f"{key}_output"] for key in KEYS):
        return history.entries(stored)
    return history.pushed(stored, str(data["question"]), history.bounded(data, shed=("raw",)))


def restore_run(data: dict[str, Any]) -> list[Any]:
    keys = data.get("keys")
    shown: list[Any] = []
    for field in RUN_FIELDS:
        value = data.get(field)
        if field == "keys":
            shown.append([k for k in keys if k in KEYS] if isinstance(keys, list) else gr.update())
        elif field == "raw":
            shown.append(value if isinstance(value, (dict, list)) else None)
        else:
            shown.append(history.text(value))
    return shown


def load_capsule_file(file: str | None) -> list[Any]:
    """A reasoning capsule's question, strategies, sample count, their prompts as they were (edited or
    bundled), sampling values with the seed, and adapter: Run then makes the same outputs again."""
    document = capsule_files.opened(file, "reasoning", "Reasoning")
    settings, notes = capsule_files.settings_of(document, "Run")
    inputs = document["inputs"]
    chosen = [k for k in inputs.get("strategies") or [] if k in KEYS]
    prompts = inputs.get("prompts") if isinstance(inputs.get("prompts"), dict) else {}
    editors = [
        json.dumps(strategies.parse(k, prompts[k]).to_json(), indent=2, ensure_ascii=False)
        if k in prompts
        else gr.update()
        for k in KEYS
    ]
    samples = inputs.get("samples")
    return [
        history.text(inputs.get("question")),
        chosen,
        samples if isinstance(samples, int) and not isinstance(samples, bool) else gr.update(),
        *editors,
        *settings,
        "  \n".join(notes),
    ]


def build(demo: gr.Blocks, shared: Shared) -> dict[str, Any]:
    problems = bundled_problems()
    with gr.Row():
        with gr.Column(scale=3):
            question = gr.Textbox(label="Word problem", lines=3, placeholder="e.g. Roger has 5 tennis balls…")
        with gr.Column(scale=2):
            pick = gr.Dropdown(
                [_label(i, p) for i, p in enumerate(problems, start=1)],
                value=None,
                label="…or pick one of the bundled problems",
            )
            gold = gr.Textbox(label="Known answer (optional, to mark right or wrong)", placeholder="blank = unknown")
    with gr.Row():
        keys = gr.CheckboxGroup([(strategies.load(k).name, k) for k in KEYS], value=list(KEYS), label="Strategies")
        samples = control(solve.SampleSpec, "samples")
        with gr.Column(min_width=160):
            run_button = gr.Button("Run", variant="primary")
            stop_button = gr.Button("Stop", elem_classes=["stop-quiet"], scale=0, min_width=90)
    gr.Markdown(
        "<span class='muted'>Each strategy has its own token budget (in its prompt below); the other sampling settings come "
        "from the sidebar and are the same for all three.</span>"
    )
    columns: dict[str, tuple[gr.Textbox, gr.Markdown]] = {}
    with gr.Row(equal_height=False):
        for key in KEYS:
            strategy = strategies.load(key)
            with gr.Column():
                gr.Markdown(f"#### {strategy.name}\n<span class='muted'>{html.escape(strategy.description)}</span>")
                output = gr.Textbox(
                    show_label=False, lines=10, max_lines=24, interactive=False, elem_id=f"reason-{key}"
                )
                summary = gr.Markdown(elem_id=f"reason-{key}-summary")
                if key == "pal":
                    program = gr.Code(language="python", label="Program run in the sandbox", interactive=False)
                    program_report = gr.Markdown()
                columns[key] = (output, summary)
    raw = gr.JSON(visible=False)
    kept = history.build("reasoning")
    save_capsule, load_capsule, capsule_file, capsule_note = capsule_files.build("reason-capsule")

    with gr.Accordion("Prompts (few-shot exemplars, editable for this session)", open=False):
        editors = {}
        with gr.Tabs():
            for key in KEYS:
                with gr.Tab(strategies.load(key).name):
                    editors[key] = gr.Code(
                        reset_prompt(key), language="json", lines=16, label=f"assets/reasoning/{key}.json"
                    )
                    reset = gr.Button("Reset to the bundled prompt", size="sm")
                    reset.click(lambda k=key: reset_prompt(k), None, editors[key], api_visibility="private")

    with gr.Accordion("Benchmark: accuracy of each strategy over a problem set", open=False):
        with gr.Row():
            source = gr.Radio(
                ["Bundled problems (48)", "Upload JSONL"], value="Bundled problems (48)", label="Problems"
            )
            bench_file = gr.File(label='JSONL of {"question", "answer"}', type="filepath")
            limit = control(benchmark.BenchmarkSpec, "limit")
            with gr.Column(min_width=160):
                bench_button = gr.Button("Run benchmark", variant="primary")
                bench_stop = gr.Button("Stop", elem_classes=["stop-quiet"], scale=0, min_width=90)
        bench_note = gr.Markdown()
        bench_table = gr.Dataframe(headers=BENCH_COLUMNS, interactive=False)
        items = gr.Dataframe(
            interactive=False,
            wrap=True,
            max_height=360,
            max_chars=90,
            label="Per problem (click a row for the full outputs)",
        )
        detail = gr.Markdown()
        with gr.Row():
            saved = LiveDropdown(saved_run_choices, label="Saved runs", scale=4)
            load_button = gr.Button("Load", scale=1)
    react_panel.build()  # reasoning with tools: the sandbox and a RAG collection
    how_it_works("reasoning")

    prompt_inputs = [editors[k] for k in KEYS]
    outputs = [c for key in KEYS for c in columns[key]] + [program, program_report, raw]
    started, run_id = stoppable([run_button.click, question.submit], stop_button)
    made = gr.State(None)  # the last finished run's replay capsule
    ran = started.success(
        run_strategies,
        [question, gold, keys, samples, *prompt_inputs, shared.adapter, run_id],
        [*outputs, made],
        inputs_kwargs=shared.sampling.kwargs(),
        api_name="reason",
        **MODEL_EVENTS,
    )
    run_parts = [question, gold, keys, *outputs]
    history.remember(kept, ran, keep_run, run_parts, only_success=True)
    history.reopen(demo, kept, restore_run, run_parts)
    save_capsule.click(
        lambda document: capsule_files.saved(document, "run"), made, capsule_file, api_name="save_reason_capsule"
    )
    load_capsule.upload(
        load_capsule_file,
        load_capsule,
        [question, keys, samples, *prompt_inputs, *shared.sampling.inputs, shared.adapter, capsule_note],
        api_name="load_reason_capsule",
    )
    pick.change(pick_problem, pick, [question, gold], api_visibility="private")
    bench_started, bench_id = stoppable([bench_button.click], bench_stop)
    bench_started.success(
        run_benchmark,
        [source, bench_file, limit, keys, samples, shared.adapter, bench_id],
        [bench_table, items, bench_note, saved],
        inputs_kwargs={**{f"{key}_prompt": editors[key] for key in KEYS}, **shared.sampling.kwargs()},
        api_name="reason_bench",
        **MODEL_EVENTS,
    )
    load_button.click(load_saved_run, saved, [bench_table, items, bench_note], api_name="reason_load_run")
    items.select(item_detail, saved, detail, api_visibility="private")
    return {"reasoning_question": question}  # what a lesson step may set here
