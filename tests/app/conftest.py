"""AppTest helpers: the dashboard on the shipped sample models with short prompts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRY = str(REPO_ROOT / "app" / "streamlit_app.py")
SHORT_PROMPT = "To be, or not to be"


def open_app(page: str | None = None, **query) -> AppTest:
    """Runs the app (home page, or ``page`` after the first run) with ``query`` as URL parameters."""
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params["prompt"] = SHORT_PROMPT
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as JSON dicts."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def chart_titled(at: AppTest, words: str) -> dict:
    """The first figure whose title contains ``words``."""
    for fig in charts(at):
        title = fig.get("layout", {}).get("title", {})
        text = title.get("text", "") if isinstance(title, dict) else str(title)
        if words.lower() in text.lower():
            return fig
    raise AssertionError(f"no chart titled with {words!r}")


def no_failures(at: AppTest) -> None:
    """Asserts the run raised nothing and showed no error box."""
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="session")
def ui() -> SimpleNamespace:
    """The helpers of this module, for tests (conftest is not importable under importlib mode)."""
    return SimpleNamespace(
        REPO_ROOT=REPO_ROOT,
        SHORT_PROMPT=SHORT_PROMPT,
        open_app=open_app,
        charts=charts,
        chart_titled=chart_titled,
        no_failures=no_failures,
        array=array,
    )


@pytest.fixture
def app() -> AppTest:
    """The home page (Compare) on the shipped trio and the short prompt."""
    return open_app()


def array(value):
    """A plotly JSON array (a list, or a typed array {"dtype", "bdata", "shape"}) as numpy."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(n) for n in shape.split(",")]
        return flat.reshape(shape) if shape else flat
    return np.array(value, dtype=float)
