"""Training dynamics: loss curves from train_log.csv and probes over training snapshots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .depth import PANELS, _colour_axis, _heatmap, _shared_zmax
from .style import finite_or_none, layout, log_axis, model_colour, safe_text


def _number(text: str):
    """'12' -> 12, '1.5' -> 1.5, '' -> None, anything else stays a string."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_train_log(path) -> list[dict]:
    """Rows of a train_log.csv with numbers parsed (empty cells -> None)."""
    with Path(path).open(newline="") as handle:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _curve(rows, column: str) -> tuple[list, list]:
    points = [(r.get("step"), r.get(column)) for r in rows]
    points = [(s, v) for s, v in points if isinstance(s, (int, float)) and isinstance(v, (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def loss_curves(logs: dict):
    """Train (solid) and validation (dashed, markers) loss against step for every run.

    Args:
        logs: run name -> rows of its train_log.csv (``read_train_log``).
    """
    fig = go.Figure()
    for i, (name, rows) in enumerate(logs.items()):
        colour, label = model_colour(name, None, i), safe_text(name)
        for column, dash, mode in (("train_loss", "solid", "lines"), ("val_loss", "dash", "lines+markers")):
            x, y = _curve(rows, column)
            if x:
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=finite_or_none(y),
                        name=f"{label} {column.split('_')[0]}",
                        mode=mode,
                        line={"color": colour, "dash": dash},
                        hovertemplate="step %{x}<br>%{y:.4f}<extra>" + label + "</extra>",
                    )
                )
    return layout(fig, "Training loss (train solid, validation dashed)", "step", "cross-entropy (nats)")


def _as_list(series, names):
    if hasattr(series, "results"):
        series = [series]
    names = list(names) if names is not None else [""] * len(series)
    if len(names) != len(series):
        raise ValueError(f"{len(series)} series but {len(names)} names")
    return list(series), names


def snapshot_depth_heatmaps(series, names=None, panel: str = "all"):
    """Depth-weight heatmaps at every snapshot (columns) of one or more runs (rows), one colour scale.

    Args:
        series: a ``probes.SnapshotSeries`` of DepthWeights, or a list of them (one per run).
        names: run display names (one per series).
        panel: "all", "attn", "mlp" or "readout".
    """
    series, names = _as_list(series, names)
    n_cols = max(len(s.results) for s in series)
    titles = []
    for s, name in zip(series, names, strict=True):
        cells = [f"{safe_text(name)} · step {int(step)}".strip(" ·") for step in s.steps]
        titles += cells + [""] * (n_cols - len(cells))
    fig = make_subplots(rows=len(series), cols=n_cols, subplot_titles=titles, horizontal_spacing=0.04)
    for r, s in enumerate(series, start=1):
        for c, result in enumerate(s.results, start=1):
            fig.add_trace(_heatmap(result, panel, None), row=r, col=c)
            fig.update_yaxes(autorange="reversed", row=r, col=c)
    all_results = [result for s in series for result in s.results]
    steps = sorted({int(step) for s in series for step in s.steps})
    title = (
        f"Depth-attention weights over training — {PANELS[panel]} at {', '.join(f'step {s}' for s in steps)}"
    )
    layout(fig, title)
    fig.update_layout(
        coloraxis=_colour_axis(_shared_zmax(all_results, None, panel)),
        height=max(400, 330 * len(series)),
        margin={"t": fig.layout.margin.t + 24},
    )
    return fig


def snapshot_norms_chart(series, name: str = ""):
    """RMS(h_l) per site at every snapshot of one run (``SnapshotSeries`` of StreamNorms), log y."""
    fig = go.Figure()
    steps = [int(s) for s in series.steps]
    shades = np.linspace(0.25, 1.0, max(len(steps), 1))
    for step, shade, result in zip(steps, shades, series.results, strict=True):
        values = result.input_rms_mean
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(values) + 1)),
                y=finite_or_none(values),
                name=f"step {step}",
                mode="lines+markers",
                line={"color": f"rgba(31, 119, 180, {shade:.2f})"},
                hovertemplate="site L%{x}<br>RMS %{y:.4g}<extra>step " + str(step) + "</extra>",
            )
        )
    who = f"{safe_text(name)} · " if name else ""
    title = f"Stream magnitude over training — {who}{', '.join(f'step {s}' for s in steps)}"
    layout(fig, title, "site l", "RMS(h_l)")
    return log_axis(fig, *[result.input_rms_mean for result in series.results])
