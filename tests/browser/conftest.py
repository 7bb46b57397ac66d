"""Browser tests: a live uvicorn (Redis channel layer, the test PostgreSQL) driven by Debian's
Chromium through Playwright. Screenshots go to test-artifacts/screenshots/ (look at them).

Chromium is Debian's (`apt-get install chromium`, done by .ci/run); never `playwright install`.
"""

import os
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ROOT, child_env, free_port, start, stop, wait_for_port

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium(require_service):
    """Chromium for one test module: Playwright's event loop must be gone before other tests
    (websocket consumers, async views) run their own in this thread."""
    require_service("Chromium", Path(CHROMIUM).exists() or bool(shutil.which("chromium")), CHROMIUM)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are plain blocking calls, so Django's async guard may stand down.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def station_server(postgres, redis_url, tmp_path):
    """uvicorn on a free port, sharing the test database and media folder with the test."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = child_env(CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}", REDIS_URL=redis_url)
    process = start(
        ["uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        log,
    )
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, *, full_page: bool = False) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


def login(browser, base: str, username: str, *, width: int = 1366, height: int = 768):
    """A fresh browser context logged in as `username` (password pw-for-tests)."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=base)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


def wait_for_js(page, expression: str, *, timeout: float = 30_000) -> None:
    """`page.wait_for_function` without its `eval`, which the pages' Content-Security-Policy
    refuses (script-src 'self', no 'unsafe-eval'): polls `page.evaluate`, which Playwright
    runs through DevTools, outside the page's policy."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout / 1000:g} s: {expression}")
        page.wait_for_timeout(100)


def station_client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=60)
