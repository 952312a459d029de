"""Build the playground from its tabs and launch it (also the Hugging Face Spaces entry point)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pipelines import gpu  # noqa: E402

gpu.prepare()  # on ZeroGPU `spaces` must come before anything that touches CUDA

import gradio as gr  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from pipelines.access import AuthConfigError, get_policy, visitor_keys  # noqa: E402
from pipelines.config import get_settings  # noqa: E402
from pipelines.engine import models  # noqa: E402
from pipelines.labels import backup  # noqa: E402
from pipelines.lessons import TABS  # noqa: E402
from pipelines.store import jobs  # noqa: E402
from playground import (  # noqa: E402
    align,
    chat,
    classify,
    data_quality,
    dataset,
    finetune,
    generate,
    history,
    inside,
    instruction_mix,
    label,
    lessons,
    mcp,
    pickers,
    rag,
    reasoning,
    remembered,
    reward,
    sidebar,
    signin,
    tab_guard,
    visitors,
    workshop,
)
from playground.controls import ASSETS, MODEL_CONCURRENCY, RANGE_WATCH_JS, how_it_works  # noqa: E402
from playground.errors import translate_errors  # noqa: E402

TITLE = "LLM Playground"
PREFERENCES_HOWTO = "How it works: from votes to a reward model"
# Requests waiting beyond this are refused at once ("queue full") instead of piling up without bound;
# model calls share one concurrency group sized from the scheduler's slots (playground.controls.MODEL_EVENTS).
QUEUE_MAX = 256
# worker threads: every model request in flight holds one while it streams, and the page's own quick
# events (pickers, tab switches) must still find one free
UI_THREADS = 40


def build_app(model_name: str | None = None) -> gr.Blocks:
    """The whole UI. It needs no loaded model: what depends on one is filled on page load."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nLearn, demo and do the whole life of a small LLM, on this machine.")
        shared = sidebar.build(demo, model_name or models.check_configured())
        welcome, start_lesson, explore = welcome_panel()
        targets: dict = {}  # what a lesson step may set in the tabs
        owners = tab_guard.TabOwners(demo)  # which handlers are whose tab: a workshop's hidden ones are refused
        tab_ids = owners.tabs
        inner_ids: dict[str, gr.Tab] = {}
        with gr.Tabs() as tabs:
            with owners.tab("Generate", "generate"):
                targets |= generate.build(demo, shared)
            with owners.tab("Chat", "chat"):
                chat.build(demo, shared)
            with owners.tab("Fine-tune", "finetune"):
                targets |= finetune.build(demo, shared)
                targets |= classify.build(demo)
                instruction_mix.build(targets["finetune_upload"])  # FLAN-style templates: a mix becomes the data
                data_quality.build()
            with owners.tab("Preferences", "preferences"):
                # each sub-tab carries the one "How it works" that explains it (Align has its own)
                with gr.Tabs() as preference_tabs:
                    targets["preferences_tab"] = preference_tabs
                    with gr.Tab("Label", id="label") as inner_ids["label"]:
                        labelling = label.build(demo, shared)
                        how_it_works("preferences", PREFERENCES_HOWTO)
                    with gr.Tab("Dataset", id="dataset") as inner_ids["dataset"]:
                        dataset.build(demo)
                        how_it_works("preferences", PREFERENCES_HOWTO)
                    with gr.Tab("Reward model", id="reward") as inner_ids["reward"]:
                        reward.build(demo)
                        how_it_works("preferences", PREFERENCES_HOWTO)
                    with gr.Tab("Align (DPO / RLOO)", id="align") as inner_ids["align"]:
                        targets |= align.build(demo)
            with owners.tab("RAG", "rag"):
                targets |= rag.build(demo, shared)
            with owners.tab("Reasoning", "reasoning"):
                targets |= reasoning.build(demo, shared)
            with owners.tab("Inside the model", "inside"):
                targets |= inside.build(demo, shared)
            with owners.tab("Lessons", "lessons"):
                targets |= {"label_mode": labelling.mode, "label_drive": labelling.drive}  # a workshop's drive
                lessons.build(demo, shared, tabs, targets, tab_ids)
        history.place_stores()  # each tab's kept work: read on load even while its tab is hidden
        pickers.keep_fresh(demo)
        places = remembered.Places(
            tabs, tab_ids, preference_tabs, inner_ids, shared.annotator, labelling.mode, labelling.drive, welcome
        )
        welcomed = remembered.keep(demo, places, resume=labelling.resume)
        quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
        start_lesson.click(remembered.dismiss_welcome, None, [welcomed, welcome], **quiet).then(
            lambda: gr.Tabs(selected="lessons"), None, tabs, **quiet
        )
        explore.click(remembered.dismiss_welcome, None, [welcomed, welcome], **quiet)
        workshop.register(demo)
        if mcp.enabled():
            mcp.register()  # the read-only tools, served over MCP (PLAYGROUND_MCP=1)
    # the error family becomes page messages, in one place for every tab; a workshop's hidden tabs are refused first
    guards = {fn_id: tab_guard.check_for(tab) for fn_id, tab in tab_guard.handlers_of_tabs(owners, TABS).items()}
    translate_errors(demo, guards)
    return demo


def welcome_panel() -> tuple[gr.Column, gr.Button, gr.Button]:
    """A first visit is offered the lessons (issue 42): the app has eight tabs and nothing said where to begin."""
    with gr.Column(visible=False, elem_id="welcome") as panel:
        gr.Markdown(
            "### New here?\nThe **Lessons** walk through five lectures step by step: each step opens the tab it "
            "needs with its settings filled in. Or explore on your own: every tab has a *How it works* panel."
        )
        with gr.Row():
            start = gr.Button("Start with a lesson", variant="primary", elem_id="welcome-lessons", scale=0)
            explore = gr.Button("Explore on my own", elem_id="welcome-explore", scale=0)
    return panel, start, explore


def launch_kwargs() -> dict:
    settings = get_settings()
    policy = get_policy()
    kwargs = {
        "server_name": settings.host,
        "server_port": settings.port,
        "css": (ASSETS / "style.css").read_text(encoding="utf-8"),
        "footer_links": ["api", "settings"],
        "head": label.KEYBOARD_JS + RANGE_WATCH_JS + remembered.TAB_WATCH_JS,
        # refused by the server while the upload streams in, before any handler sees it
        "max_file_size": f"{settings.max_upload_mb}mb",
        # a client whose input fails Gradio's own validation (a malformed chat history, say) gets
        # the reason instead of "the upstream app raised an exception"
        "show_error": True,
        "max_threads": MODEL_CONCURRENCY + UI_THREADS,
        # launch() HEADs its own page once (3 s timeout) to tell Colab users to share, and raises when that
        # is slow: on a 2-core machine still loading the model the page took longer (CI: "When localhost is
        # not accessible..."). The app never runs in Colab; this skips that probe only.
        "_frontend": False,
    }
    kwargs.update(signin.launch_kwargs(policy))  # throttled password sign-in when PLAYGROUND_AUTH is set
    # Every request passes the visitors middleware (the visitor cookie, sessions bound to it, the client's
    # address). It reads X-Forwarded-For itself, behind PLAYGROUND_PROXY_HOPS proxies only: uvicorn must not
    # rewrite the address first (by default it trusts the header from 127.0.0.1, i.e. from any local client).
    if os.environ.get("FORWARDED_ALLOW_IPS"):
        logging.getLogger("app").warning(
            "FORWARDED_ALLOW_IPS is ignored: PLAYGROUND_PROXY_HOPS says which proxies to trust"
        )
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    middleware = [Middleware(visitors.Visitors)]
    if mcp.enabled():
        middleware.append(Middleware(mcp.Access))  # inside Visitors: the client address is already the real one
    kwargs["app_kwargs"] = {"middleware": middleware}
    kwargs.update(mcp.launch_kwargs())
    return kwargs


def private_storage() -> None:
    """Everything the app writes is its user's alone, under its data directory (issue 35, L4).

    Gradio keeps uploads in one temp directory per machine (/tmp/gradio) by default: on a server
    shared by a class, the first user's app owned it and every other user's uploads failed (HTTP
    500), and what was uploaded there, like the database, was readable by every local user.
    """
    settings = get_settings()
    os.umask(0o077)  # files and directories created from here on (job workers inherit it): owner-only
    uploads = settings.data_dir / "tmp" / "gradio"
    uploads.mkdir(parents=True, exist_ok=True)
    for directory in (settings.data_dir, settings.data_dir / "tmp", uploads):
        try:
            directory.chmod(0o700)
        except PermissionError:  # someone else's directory (a mounted volume): its owner decides
            logging.getLogger("app").warning("%s is not ours to make private", directory)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(uploads))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        private_storage()
    except (OSError, ValueError) as error:
        print(f"error: the data directory cannot be prepared: {error}", file=sys.stderr)
        return 1
    try:
        get_policy()
        visitor_keys()  # PLAYGROUND_SECRET_KEY, or the data directory's key: refused here rather than per request
    except AuthConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        name = models.check_configured()
    except models.ModelUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    jobs.manager()  # recover jobs interrupted by a previous shutdown, then run queued ones
    backups = backup.start()  # PLAYGROUND_BACKUP_DIR / _REPO: periodic snapshots (restored on open when empty)
    demo = build_app(name).queue(default_concurrency_limit=4, max_size=QUEUE_MAX)
    # From here on model calls wait for the weights; started after the UI is built (competing for
    # the interpreter, a load would slow the build as much as it gained) and before the server
    # answers, so that no early request loads a second copy.
    models.load_in_background()
    demo.launch(prevent_thread_lock=True, **launch_kwargs())
    try:
        models.wait_for_handle()
    except models.ModelUnavailable as error:  # what only loading could tell (a Hub id offline, corrupt weights)
        print(f"error: {error}", file=sys.stderr)
        demo.close()
        return 1
    logging.getLogger("app").info("model loaded; every tab is ready")
    # A Space restarting sends SIGTERM: leave through `finally`, so the last labels are backed up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        demo.block_thread()
    finally:
        if backups is not None:
            backups.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
