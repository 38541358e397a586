"""One place for how every figure looks: colour scale, model colours, fonts, layout, safe labels.

Every label that comes from a prompt or a model (token strings, source labels, model names) goes
through ``safe_label``: plotly renders a subset of HTML in titles, ticks and hover text, so a prompt
``<script>`` must be shown as text, and whitespace tokens must be visible.
"""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.graph_objects as go

# Depth-attention weights are drawn on 0..0.8 like the paper's Fig. 8, unless the data exceed it.
WEIGHT_ZMAX = 0.8
WEIGHT_COLORSCALE = "Viridis"
DIVERGING_COLORSCALE = "RdBu_r"  # signed quantities (attribution), centred on 0
SEQUENTIAL_COLORSCALE = "Blues"

MODEL_COLOURS = {"prenorm": "#7f7f7f", "full": "#1f77b4", "block": "#ff7f0e"}
EXTRA_COLOURS = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FONT = {"family": "Inter, Helvetica, Arial, sans-serif", "size": 13}
PRENORM_NOTE = "PreNorm: every source weight 1"

# Whitespace shown visibly in token labels.
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}


def safe_label(text) -> str:
    """A string safe to put in any plotly label or HTML cell: whitespace made visible, HTML escaped.

    Args:
        text: anything (converted with ``str``); ``None`` becomes "".

    Returns:
        The escaped string, e.g. ``"<b>"`` -> ``"&lt;b&gt;"``, ``" "`` -> ``"␣"``.
    """
    if text is None:
        return ""
    visible = "".join(VISIBLE.get(ch, ch) for ch in str(text))
    return html.escape(visible, quote=True)


def safe_text(text) -> str:
    """HTML-escaped text for names and sentences (whitespace kept as it is); ``None`` becomes ""."""
    return "" if text is None else html.escape(str(text), quote=True)


def safe_labels(texts) -> list[str]:
    """``safe_label`` applied to each item."""
    return [safe_label(t) for t in texts]


def model_colour(name: str, residual: str | None = None, index: int = 0) -> str:
    """Colour of a model: by residual rule (prenorm grey, full blue, block orange), else a palette."""
    for key in (residual, name):
        if key is None:
            continue
        for rule, colour in MODEL_COLOURS.items():
            if rule in str(key).lower():
                return colour
    return EXTRA_COLOURS[index % len(EXTRA_COLOURS)]


def weight_zmax(*arrays, zmax: float | None = None) -> float:
    """The colour-scale maximum: zmax if given, else 0.8 unless the finite data exceed it."""
    if zmax is not None:
        return float(zmax)
    top = WEIGHT_ZMAX
    for a in arrays:
        a = np.asarray(a, dtype=float)
        if np.isfinite(a).any():
            top = max(top, float(np.nanmax(a)))
    return top


def layout(fig: go.Figure, title: str, x_title: str = "", y_title: str = "", **kwargs) -> go.Figure:
    """Applies the shared layout (font, white template, margins) and the title and axis titles."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template="plotly_white",
        font=FONT,
        margin={"l": 70, "r": 30, "t": 70, "b": 60},
        hoverlabel={"font": {"family": "monospace"}},
        **kwargs,
    )
    if x_title:
        fig.update_xaxes(title_text=x_title)
    if y_title:
        fig.update_yaxes(title_text=y_title)
    return fig


def finite_or_none(values) -> list:
    """A list of floats with NaN/inf replaced by None (plotly leaves gaps; JSON stays valid)."""
    out = []
    for v in np.asarray(values, dtype=float).ravel().tolist():
        out.append(v if math.isfinite(v) else None)
    return out


def model_title(name: str, residual: str) -> str:
    """'name (rule)' escaped, or just the rule when the name is empty."""
    return safe_text(f"{name} ({residual})" if name else residual)
