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


SUBTITLE_FONT = {"size": 11, "color": "#555"}
LEGEND = {"orientation": "h", "x": 0.0, "xanchor": "left", "yref": "container", "y": 0.0, "yanchor": "bottom"}


def _legend_rows(fig: go.Figure) -> int:
    """How many rows the horizontal legend takes in a half-width chart (two entries a row)."""
    shown = [t for t in fig.data if t.showlegend is not False and t.name]
    return 0 if len(shown) < 2 else (len(shown) + 1) // 2


def layout(
    fig: go.Figure, title: str, x_title: str = "", y_title: str = "", subtitle: str = "", **kwargs
) -> go.Figure:
    """Applies the shared layout (font, white template, margins) and the title and axis titles.

    The title stays short enough for a third-width column; details go in ``subtitle``
    (``layout.title.subtitle``), a smaller line under it ("<br>" for more lines). Legends lie
    horizontally under the plot, so the plot keeps its width.
    Call it after the traces are added: the bottom margin is sized to the legend's entries.
    """
    sub_lines = subtitle.count("<br>") + 1 if subtitle else 0
    lines = title.count("<br>") + 1
    legend_rows = _legend_rows(fig)
    fig.update_layout(
        title={
            "text": title,
            "subtitle": {"text": subtitle, "font": SUBTITLE_FONT},
            "x": 0.01,
            "xanchor": "left",
            "yref": "container",
            "y": 1.0,
            "yanchor": "top",
            "pad": {"t": 12},
        },
        template="plotly_white",
        font=FONT,
        margin={"l": 70, "r": 30, "t": 32 + 22 * lines + 15 * sub_lines, "b": 60 + 22 * legend_rows},
        hoverlabel={"font": {"family": "monospace"}},
        legend=LEGEND,
        **kwargs,
    )
    if x_title:
        fig.update_xaxes(title_text=x_title)
    if y_title:
        fig.update_yaxes(title_text=y_title)
    return fig


def sparse_ticks(labels, step: int) -> list[str]:
    """Every ``step``-th label of a category axis (always the first), for ``tickvals``."""
    labels = list(labels)
    return [label for i, label in enumerate(labels) if i % step == 0]


def log_ticks(*arrays) -> list[float]:
    """Tick values for a log axis: the sparsest of powers of 10, 1-2-5 per decade, or 1..9 per
    decade that labels at least three values inside the data (no crowded minor labels 2..9)."""
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays] or [np.zeros(0)])
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return [1.0]
    low, high = math.floor(math.log10(values.min())), math.ceil(math.log10(values.max()))
    for steps in ((1,), (1, 2, 5), tuple(range(1, 10))):  # the sparsest that labels 3 values
        ticks = [m * 10.0**e for e in range(low, high + 1) for m in steps]
        inside = [t for t in ticks if values.min() <= t <= values.max()]
        if len(inside) >= 3:
            break
    return [t for t in ticks if values.min() / 2.5 <= t <= values.max() * 2.5]


def log_axis(fig: go.Figure, *arrays) -> go.Figure:
    """A log y axis labelled only at ``log_ticks`` of the data (e.g. 0.1, 0.2, 0.5, 1, 2)."""
    ticks = log_ticks(*arrays)
    fig.update_yaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
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
