"""A real headless Chromium (Debian's `chromium`, driven by playwright) against the app on a free port.

No browser is downloaded: playwright is pointed at the system's Chromium. Without one these
tests skip with a message saying how to install it; CI installs it (.ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import ROOT, launched_app

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = "install Debian's Chromium (`sudo apt-get install chromium`) or set PLAYGROUND_CHROMIUM to a Chromium binary"


def chromium_path() -> str | None:
    configured = os.environ.get("PLAYGROUND_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"browser tests need Chromium: {INSTALL}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.browser_failed = report.failed


@contextmanager
def opened(browser, request, url: str):
    """A fresh page on `url`; a screenshot of it is saved when the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("tab", name="Generate").wait_for()
    try:
        yield page
    finally:
        if getattr(request.node, "browser_failed", False):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            print(f"screenshot saved: {ARTIFACTS / f'{name}.png'}")
        context.close()


@pytest.fixture
def open_page(browser, request):
    """`with open_page(url) as page:` -- a fresh browser context per page (another visitor), as `page` is."""
    return lambda url: opened(browser, request, url)


@pytest.fixture
def page(browser, request, app_url):
    """A fresh page on the app (the shared tiny model)."""
    with opened(browser, request, app_url) as page:
        yield page


@pytest.fixture
def own_page(browser, request, fresh_tiny_handle):
    """A page on an app with a tiny model of its own: using an adapter attaches it to the model."""
    with launched_app(fresh_tiny_handle) as url, opened(browser, request, url) as page:
        yield page


@pytest.fixture
def job_runner(tiny_model_env, data_dir):
    """The app's job manager for this test's data directory (workers train the tiny model)."""
    from pipelines.store import db, jobs

    manager = jobs.JobManager(max_parallel=1, interval=0.3).start()
    previous, jobs._manager = jobs._manager, manager
    yield manager
    for job in jobs.list_jobs():
        if not job.done:
            jobs.request_cancel(job.id)
    manager.poll_once()
    manager.stop()
    jobs._manager = previous
    db.dispose_all()
