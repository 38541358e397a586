"""Real-browser fixtures: one Streamlit server for the whole session, one headless Chromium, and
helpers that wait for the app the way a person would (the page's title, then its charts).

Without /usr/bin/chromium or the playwright package the browser tests are skipped, unless
``ATTNRES_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"
SERVER_LOG = OUTPUT / "browser-server.log"  # the server's stdout and stderr
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 90
TIMEOUT_MS = 60_000  # per wait: the probes run on a slow CPU
VIEWPORT = {"width": 1500, "height": 1000}
SHORT_PROMPT = "To be, or not"
SHIPPED = ("PreNorm", "Full AttnRes", "Block AttnRes")


def _unavailable(reason: str) -> None:
    if os.environ.get("ATTNRES_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ATTNRES_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def playwright_api():
    """playwright.sync_api, after checking that the browser can run at all."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright import sync_api  # noqa: PLC0415 (optional dependency)
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    return sync_api


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    """Ends the server's own process group (created by ``start_new_session``), nothing else."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def serve(name: str, env: dict | None = None):
    """A Streamlit server running the app with extra environment variables; yields its base URL."""
    port = _free_port()
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / f"{name}.log"
    command = [
        sys.executable, "-m", "app.serve",  # `streamlit run app/streamlit_app.py`, warmed up at start
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"the Streamlit server did not become healthy at {url}:\n{tail}", pytrace=False)
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def app_url(playwright_api):
    """Base URL of a Streamlit server running the app, shared by every browser test."""
    with serve("browser-server") as url:
        yield url


@pytest.fixture(scope="session")
def browser(playwright_api):
    """One headless Chromium for the session."""
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, app_url):
    """Factory of pages, each in its own browser context (a fresh Streamlit session)."""
    contexts = []

    def make():
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def url_of(base: str, path: str = "", **query) -> str:
    """``base/path?query`` (lists become repeated parameters, as the app writes them)."""
    return f"{base}/{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")


def query_of(page) -> dict[str, list[str]]:
    """The page's current URL parameters."""
    return parse_qs(urlsplit(page.url).query)


def settled(page) -> None:
    """Waits until the script run of this session has finished."""
    from playwright.sync_api import expect  # noqa: PLC0415

    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def open_view(page, base: str, path: str, title: str, **query) -> None:
    """Opens a page by URL and waits for its title and the end of its first run."""
    from playwright.sync_api import expect  # noqa: PLC0415

    page.goto(url_of(base, path, **query))
    expect(page.locator("h1")).to_have_text(title)
    settled(page)


def go_to(page, link: str, title: str) -> None:
    """Follows a sidebar navigation link and waits for the new page's title and run."""
    from playwright.sync_api import expect  # noqa: PLC0415

    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link, exact=True).click()
    expect(page.locator("h1")).to_have_text(title)
    settled(page)


def expect_charts(page, titles: list[str]) -> None:
    """Exactly these plotly charts (title prefixes, in page order), each drawn with data."""
    from playwright.sync_api import expect  # noqa: PLC0415

    expect(page.locator(".gtitle")).to_have_text([re.compile("^" + re.escape(t)) for t in titles])
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(len(titles))
    drawn = charts.evaluate_all(
        "els => els.map(e => !!e.querySelector('svg.main-svg') && e.querySelectorAll('g.trace, g.hm').length)"
    )
    assert all(drawn), f"a chart has no SVG or no drawn trace: {dict(zip(titles, drawn, strict=True))}"


def expect_no_failure(page) -> None:
    """No exception box and no error message on the page."""
    from playwright.sync_api import expect  # noqa: PLC0415

    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


def metric_values(page) -> list[str]:
    """The texts of the st.metric values, in page order."""
    return page.get_by_test_id("stMetricValue").all_inner_texts()


def prompt_box(page):
    """The sidebar prompt text area."""
    return page.get_by_label("Prompt", exact=True)


def set_prompt(page, text: str) -> None:
    """Types a new prompt, submits it (Ctrl+Enter) and waits until the URL carries it."""
    box = prompt_box(page)
    box.fill(text)
    box.press("Control+Enter")
    page.wait_for_function(
        "text => new URL(location.href).searchParams.get('prompt') === text", arg=text, timeout=TIMEOUT_MS
    )
    settled(page)


def screenshot(page, name: str) -> Path:
    """A full-page screenshot under test-output/screenshots/.

    Streamlit scrolls inside its main element, not the document, so the viewport is stretched to
    the main element's height for the shot and restored afterwards.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = page.evaluate(
        "() => Math.max(document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 0,"
        " document.documentElement.scrollHeight)"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], height)})
    page.wait_for_timeout(500)  # plotly re-lays out on resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    return path


@pytest.fixture(scope="session")
def ui() -> SimpleNamespace:
    """The helpers of this module, for tests (conftest is not importable under importlib mode)."""
    return SimpleNamespace(
        serve=serve,
        SHORT_PROMPT=SHORT_PROMPT,
        SHIPPED=SHIPPED,
        url_of=url_of,
        query_of=query_of,
        settled=settled,
        open_view=open_view,
        go_to=go_to,
        expect_charts=expect_charts,
        expect_no_failure=expect_no_failure,
        metric_values=metric_values,
        prompt_box=prompt_box,
        set_prompt=set_prompt,
        screenshot=screenshot,
        SERVER_LOG=SERVER_LOG,
        TIMEOUT_MS=TIMEOUT_MS,
    )
