"""A live dashboard for the browser benchmarks: a Streamlit server on 127.0.0.1, its health, memory
and CPU time, the machine's load, and Chromium pages that wait the way a person does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
VIEWPORT = {"width": 1500, "height": 1000}
COMMANDS = {  # how the server is started
    "serve": [sys.executable, "-m", "app.serve"],  # warms up at start
    "streamlit-run": [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py"],
}
# a chart counts as drawn once plotly has put a trace (line, bar or heatmap image) into its SVG
CHARTS_DRAWN_JS = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].filter(
  e => e.querySelector('svg.main-svg') && e.querySelectorAll('g.trace, g.hm').length).length"""


def load1() -> float:
    """The machine's 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m app.serve`` (or plain ``streamlit run``, or ``command``) in its own process group,
    logging to a file."""

    def __init__(self, how: str = "serve", log: Path | None = None, command: list[str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or Path(f"/tmp/attnres-bench-{self.port}.log")
        options = {"address": "127.0.0.1", "port": str(self.port), "headless": "true"}
        command = [
            *(command or COMMANDS[how]),
            *(x for k, v in options.items() for x in (f"--server.{k}", v)),
        ]
        self.started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                return response.status == 200 and response.read().strip() == b"ok"
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout_s: float = 300) -> float:
        """Seconds from the start of the process to the first healthy answer (polled every 20 ms)."""
        while not self.healthy():
            if self.process.poll() is not None or time.perf_counter() - self.started > timeout_s:
                raise RuntimeError(f"server not healthy: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        return time.perf_counter() - self.started

    def rss_mb(self) -> float:
        """Resident memory of the server process (MiB)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def new_page(browser):
    """A page in a fresh browser context (a new Streamlit session) that waits up to 10 minutes."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(600_000)
    return context.new_page()


def url_of(base: str, path: str = "", **query) -> str:
    return f"{base}/{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")


def settled(page, timeout_ms: float = 600_000) -> None:
    """Waits until the session's script run has finished."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


def wait_charts(page, count: int, timeout_ms: float = 600_000) -> None:
    """Waits until ``count`` plotly charts are drawn (polled every 10 ms)."""
    page.wait_for_function(f"() => ({CHARTS_DRAWN_JS})() >= {count}", timeout=timeout_ms, polling=10)


def submit_prompt(page, text: str) -> None:
    """Types a prompt into the sidebar and submits it (Ctrl+Enter); does not wait."""
    box = page.get_by_label("Prompt", exact=True)
    box.fill(text)
    box.press("Control+Enter")


def wait_prompt_done(page, text: str, timeout_ms: float = 600_000) -> None:
    """Waits until the URL carries ``text`` and the run it started has finished."""
    page.wait_for_function(
        "t => new URL(location.href).searchParams.get('prompt') === t", arg=text, timeout=timeout_ms
    )
    settled(page, timeout_ms)
