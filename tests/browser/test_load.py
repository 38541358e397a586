"""Many people on one server at once: N Chromium sessions (``ATTNRES_LOAD_SESSIONS``, default 10)
open the home page together, each sets its own prompt and model set, switches page and reads back
its own numbers. Every step is sent to all sessions before any is waited for, so their script runs
overlap on the server. The expected numbers are computed here, in the test process, from the
shipped models: the loss by hand from the logits, the depth weights with ``probes``."""

from __future__ import annotations

import itertools
import os
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SESSIONS = int(os.environ.get("ATTNRES_LOAD_SESSIONS", "10"))
BUDGET_S = float(os.environ.get("ATTNRES_LOAD_BUDGET_S", "480"))  # the whole test, all sessions
MAX_SESSIONS = 32
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_models"
MODEL_DIRS = {
    "PreNorm": "shakespeare-prenorm",
    "Full AttnRes": "shakespeare-full",
    "Block AttnRes": "shakespeare-block",
}
LINES = [
    "Friends, Romans, countrymen, lend me your ears",
    "If music be the food of love, play on",
    "We are such stuff as dreams are made on",
    "Now is the winter of our discontent",
    "All the world's a stage",
    "Once more unto the breach, dear friends",
    "The quality of mercy is not strained",
    "What light through yonder window breaks",
]
DEPTH_MODEL = "Block AttnRes"  # the Depth routing page's default model
CAPTION = re.compile(r"^Prompt: \d+ tokens\.$")


def _expect():
    from playwright.sync_api import expect  # noqa: PLC0415 (the conftest skips without playwright)

    return expect


class Expected:
    """What one session must show, computed in the test process."""

    def __init__(self):
        import torch  # noqa: PLC0415 (only the browser suite's workers need it here)

        from attnres import load_model  # noqa: PLC0415

        self.torch = torch
        self.models = {name: load_model(str(SAMPLE_DIR / d), device="cpu") for name, d in MODEL_DIRS.items()}

    def ids(self, name: str, text: str) -> list[int]:
        import probes  # noqa: PLC0415

        return list(probes.encode_prompt(self.models[name], text).ids)

    def loss(self, name: str, text: str) -> float:
        """Mean next-character cross-entropy, by hand from the logits."""
        torch = self.torch
        ids = torch.tensor([self.ids(name, text)])
        with torch.no_grad():
            logits = self.models[name](ids[:, :-1]).logits[0].double()
        return float(-logits.log_softmax(-1).gather(1, ids[0, 1:, None]).mean())

    def site_weights(self, text: str):
        """The Depth routing page's default view: Block's per-token weights at the middle site."""
        import numpy as np  # noqa: PLC0415

        import probes  # noqa: PLC0415

        dw = probes.depth_weights(self.models[DEPTH_MODEL], text)
        row = len(dw.sites) // 2
        n = int(dw.mask[0].sum())
        return int(dw.sites[row]), np.asarray(dw.per_token[0, :n, row, : len(dw.sources[row])])


@pytest.fixture(scope="module")
def expected() -> Expected:
    return Expected()


def _plan(n: int) -> list[tuple[str, list[str]]]:
    """Distinct prompts and a model set per session (every subset of the trio in turn)."""
    names = list(MODEL_DIRS)
    subsets = [list(c) for k in (3, 2, 1) for c in itertools.combinations(names, k)]
    return [(f"{LINES[i % len(LINES)]} (session {i})", subsets[i % len(subsets)]) for i in range(n)]


class Clock:
    """One deadline for the whole test; every wait gets what is left of it."""

    def __init__(self, budget_s: float):
        self.end = time.monotonic() + budget_s

    def ms(self) -> float:
        left = self.end - time.monotonic()
        assert left > 0, f"{SESSIONS} sessions did not finish within {BUDGET_S:.0f} s"
        return left * 1000


def _settled(page, clock: Clock) -> None:
    _expect()(page.get_by_test_id("stApp")).to_have_attribute(
        "data-test-script-state", "notRunning", timeout=clock.ms()
    )


def _check_compare(page, expected: Expected, prompt: str, models: list[str], clock: Clock) -> None:
    """The session shows its own prompt, token count, model set and losses."""
    expect = _expect()
    expect(page.get_by_text(CAPTION)).to_have_text(
        f"Prompt: {len(expected.ids(models[0], prompt))} tokens.", timeout=clock.ms()
    )
    labels = [f"{name}: loss on the prompt" for name in models]
    expect(page.get_by_test_id("stMetricLabel")).to_have_text(labels, timeout=clock.ms())
    _settled(page, clock)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(prompt)
    shown = [float(v.removesuffix(" nats")) for v in page.get_by_test_id("stMetricValue").all_inner_texts()]
    want = [expected.loss(name, prompt) for name in models]
    assert len(shown) == len(want), (prompt, shown)
    for name, s, w in zip(models, shown, want, strict=True):
        assert abs(s - w) <= 5e-4 + 1e-6, f"{name} on {prompt!r}: shows {s}, one computation gives {w:.4f}"


SITE_DATA_JS = """el => {
  const gd = el.querySelector('.js-plotly-plot');
  const title = gd.layout.title.text || gd.layout.title;
  return {title: String(title), z: Array.from(gd._fullData[0].z, row => Array.from(row))};
}"""


def _check_depth(page, expected: Expected, prompt: str, clock: Clock) -> None:
    """The Depth routing page shows Block's weights for this session's prompt."""
    import numpy as np  # noqa: PLC0415

    expect = _expect()
    expect(page.locator("h1")).to_have_text("Depth routing", timeout=clock.ms())
    _settled(page, clock)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(prompt)
    site, want = expected.site_weights(prompt)
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(4, timeout=clock.ms())
    got = charts.nth(2).evaluate(SITE_DATA_JS)
    title = re.sub(r"<[^>]+>", "", got["title"])  # Streamlit's theme wraps titles in <b>
    assert title.startswith(f"Site L{site} "), title
    z = np.array(got["z"], dtype=float)
    assert z.shape == want.shape, f"{prompt!r}: heatmap {z.shape}, a single computation {want.shape}"
    np.testing.assert_allclose(z, want, rtol=0, atol=1e-6, equal_nan=True)


def _no_failure(page) -> None:
    expect = _expect()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


def _open_all(pages, plan, app_url, ui, expected, clock) -> None:
    """Every session opens the home page on the same prompt (identical requests) with its model set."""
    for page, (_, models) in zip(pages, plan, strict=True):
        page.goto(ui.url_of(app_url, "", prompt=ui.SHORT_PROMPT, models=models), wait_until="commit")
    for page, (_, models) in zip(pages, plan, strict=True):
        _check_compare(page, expected, ui.SHORT_PROMPT, models, clock)


def _type_prompts(pages, plan, expected, clock) -> None:
    """Every session types its own prompt; all are submitted before any is waited for."""
    for page, (prompt, _) in zip(pages, plan, strict=True):
        box = page.get_by_label("Prompt", exact=True)
        box.fill(prompt, timeout=clock.ms())
        box.press("Control+Enter")
    for page, (prompt, models) in zip(pages, plan, strict=True):
        page.wait_for_function(
            "t => new URL(location.href).searchParams.get('prompt') === t", arg=prompt, timeout=clock.ms()
        )
        _check_compare(page, expected, prompt, models, clock)


def test_concurrent_sessions_each_see_their_own_numbers(new_page, app_url, ui, expected):
    assert 1 <= SESSIONS <= MAX_SESSIONS, f"ATTNRES_LOAD_SESSIONS must be 1..{MAX_SESSIONS}"
    log_start = ui.SERVER_LOG.stat().st_size
    clock = Clock(BUDGET_S)
    plan = _plan(SESSIONS)
    pages = [new_page() for _ in plan]
    try:
        _open_all(pages, plan, app_url, ui, expected, clock)
        _type_prompts(pages, plan, expected, clock)
        for page in pages:  # everyone switches page at once
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="Depth routing", exact=True).click()
        for page, (prompt, _) in zip(pages, plan, strict=True):  # own prompt and numbers, after all changed
            _check_depth(page, expected, prompt, clock)
            assert ui.query_of(page)["prompt"] == [prompt], page.url
    except AssertionError:
        for i, page in enumerate(pages):
            page.screenshot(path=str(ui.SERVER_LOG.parent / f"load-session-{i}.png"))
        raise
    for page in pages:
        _no_failure(page)
    log = ui.SERVER_LOG.read_bytes()[log_start:].decode(errors="replace")
    assert "Traceback" not in log, f"the server logged:\n{log[-4000:]}"
