"""Exports: standalone offline HTML (plotly.js inlined), PNG (kaleido), JSON and CSV of the numbers."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import plotly.graph_objects as go

PLOTLY_JS_HEADER = "* plotly.js v"  # the licence header that opens the inlined bundle


def to_html(fig: go.Figure, full_html: bool = True, include_plotlyjs=True) -> str:
    """Figure as standalone HTML that works offline: plotly.js is inlined, never loaded from a CDN.

    Args:
        fig: a plotly Figure.
        full_html: a whole document (True) or a ``<div>`` fragment to embed in a page.
        include_plotlyjs: True inlines plotly.js; False leaves it out (a page that already inlined it).
    """
    if include_plotlyjs not in (True, False):
        raise ValueError("include_plotlyjs must be True or False (no CDN: the HTML must work offline)")
    return fig.to_html(full_html=full_html, include_plotlyjs=include_plotlyjs, config={"displaylogo": False})


def offline_problems(html: str, bundles: int | None = 1) -> list[str]:
    """Reasons an HTML page would not work offline; empty when it does.

    Checks that no ``<script>`` loads a ``src``, that plotly.js is inlined ``bundles`` times (None: any
    number), and that no script other than the plotly.js bundle itself mentions http(s) or a CDN (the
    bundle holds a few URLs in config defaults that a heatmap or line chart never fetches).
    """
    problems = []
    if re.search(r"<script[^>]*\bsrc\s*=", html, flags=re.IGNORECASE):
        problems.append("a <script> loads a src")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.DOTALL | re.IGNORECASE)
    found = sum(PLOTLY_JS_HEADER in script for script in scripts)
    if bundles is not None and found != bundles:
        problems.append(f"plotly.js is inlined {found} times, expected {bundles}")
    for script in scripts:
        if PLOTLY_JS_HEADER not in script and re.search(r"https?://|cdn\.", script):
            problems.append("a script outside the plotly.js bundle refers to the network")
    return problems


def to_png(fig: go.Figure, scale: float = 2) -> bytes:
    """Figure as PNG bytes, rendered by kaleido with a local Chrome/Chromium.

    Raises:
        RuntimeError: kaleido or a Chrome/Chromium browser is missing or fails to start.
    """
    try:
        import kaleido  # noqa: F401
    except ImportError as error:
        raise RuntimeError("PNG export needs the kaleido package (pip install kaleido).") from error
    try:
        return fig.to_image(format="png", scale=scale)
    except Exception as error:  # kaleido reports a missing browser with several exception types
        raise RuntimeError(
            "PNG export failed: kaleido needs a Chrome or Chromium browser (e.g. apt install chromium, "
            f"or set BROWSER_PATH); the error was: {error}"
        ) from error


def _plain(value):
    """JSON-ready Python values: probe results, figures, numpy arrays and scalars, NaN -> None."""
    if hasattr(value, "to_dict") and not isinstance(value, dict):
        value = value.to_plotly_json() if isinstance(value, go.Figure) else value.to_dict()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(obj, indent: int | None = None) -> str:
    """JSON text of a probe result, a figure, rows, or any nest of numpy/Python values (NaN -> null)."""
    if isinstance(obj, go.Figure):
        return obj.to_json()
    return json.dumps(_plain(obj), indent=indent, allow_nan=False)


def to_csv(data) -> str:
    """CSV text of table rows (list of dicts; header = every key in first-seen order) or a 1-/2-D array."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], dict):
        header = list(dict.fromkeys(key for row in data for key in row))
        writer.writerow(header)
        for row in data:
            writer.writerow(["" if row.get(k) is None else row.get(k) for k in header])
        return out.getvalue()
    array = np.asarray(data, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"to_csv takes rows (list of dicts) or a 1-D/2-D array, got shape {array.shape}")
    for row in array:
        writer.writerow(["" if not math.isfinite(v) else repr(float(v)) for v in row])
    return out.getvalue()
