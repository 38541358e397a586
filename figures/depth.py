"""Depth-attention weights as heatmaps (paper Fig. 8), per-token views, entropy and sinks.

Rows are consuming sites ("L3 (attn)" = the input of layer 3, an attention sublayer), columns the
model's own source labels. Side-by-side panels share one colour axis (0..0.8 like the paper, wider only
when an AttnRes model's weights exceed it). PreNorm has no routing: its rule h_l = v_0 + sum v_i is
shown as weight 1 on every source, saturating the scale, and the panel says so.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._grid import hover_sources, on_grid, site_labels, union_columns
from .style import (
    PRENORM_NOTE,
    WEIGHT_COLORSCALE,
    finite_or_none,
    layout,
    model_colour,
    model_title,
    safe_label,
    safe_labels,
    sparse_ticks,
    weight_zmax,
)

PANELS = {"all": "all sites", "attn": "pre-attention", "mlp": "pre-MLP", "readout": "output readout"}
HOVER = "site %{y}<br>source %{customdata}<br>weight %{z}<extra></extra>"


def _panel(dw, panel: str):
    if panel not in PANELS:
        raise ValueError(f"panel must be one of {', '.join(PANELS)}, got {panel!r}")
    return dw if panel == "all" else dw.view(panel)


def depth_grid(dw, panel: str = "all", token: int | None = None):
    """The numbers one heatmap shows: (z [rows, cols], column labels, row labels, hover labels).

    Args:
        dw: a ``probes.DepthWeights``.
        panel: "all", "attn", "mlp" or "readout".
        token: None for the mean over real tokens, else a token index of the first prompt.
    """
    view = _panel(dw, panel)
    matrix = view.mean if token is None else view.per_token[0, token]
    columns = union_columns(view.sources)
    z = on_grid(matrix, view.sources, columns)
    return z, columns, site_labels(view.sites, view.kinds), hover_sources(view.sources, columns)


def _token_note(dw, token: int | None) -> str:
    """The subtitle line: which token, and for PreNorm why its panel is saturated."""
    what = "token mean" if token is None else f"token #{int(token)}"
    return what + (f" · {PRENORM_NOTE}" if dw is not None and dw.residual == "prenorm" else "")


def _heatmap(dw, panel: str, token: int | None) -> go.Heatmap:
    z, columns, rows, hover = depth_grid(dw, panel, token)
    return go.Heatmap(
        z=z,
        x=safe_labels(columns),
        y=rows,
        customdata=hover,
        coloraxis="coloraxis",
        hovertemplate=HOVER,
        xgap=1,
        ygap=1,
    )


def _shared_zmax(dws, zmax: float | None, panel: str = "all", token: int | None = None) -> float:
    """0.8 or the largest routed weight shown in this panel (token mean or the one token).

    Weights fixed by construction do not stretch the scale, they saturate it: PreNorm's ones and the
    weight 1 of a site with a single source (site 1 reads only the embedding).
    """
    shown = [depth_grid(dw, panel, token)[0] for dw in dws if dw.residual != "prenorm"]
    routed = [z[np.isfinite(z).sum(1) > 1] for z in shown]
    return weight_zmax(*routed, zmax=zmax)


def depth_zmax(dws, panels=("all",), token: int | None = None, zmax: float | None = None) -> float:
    """One colour-scale top for several heatmaps (e.g. the pre-attention and pre-MLP panels).

    Args:
        dws: DepthWeights (a single one is accepted too).
        panels: the panels that will share the scale.
        token: None for token means, else the token index shown.
        zmax: a fixed top; returned as is when given.
    """
    dws = [dws] if hasattr(dws, "mean") else list(dws)
    return max(_shared_zmax(dws, zmax, panel, token) for panel in panels)


def _colour_axis(zmax: float) -> dict:
    return {"cmin": 0.0, "cmax": zmax, "colorscale": WEIGHT_COLORSCALE, "colorbar": {"title": {"text": "α"}}}


def depth_heatmap(
    dw, name: str = "", panel: str = "all", zmax: float | None = None, token: int | None = None
):
    """Heatmap of depth-attention weights, consumer site × source (paper Fig. 8).

    Args:
        dw: a ``probes.DepthWeights``.
        name: the model's display name.
        panel: "all", "attn" (pre-attention), "mlp" (pre-MLP) or "readout".
        zmax: top of the colour scale; default 0.8 unless the AttnRes weights exceed it.
        token: None for the mean over real tokens, else a token index of the first prompt.

    Returns:
        A plotly Figure (colour axis ``layout.coloraxis``: cmin 0, cmax zmax).
    """
    fig = go.Figure(_heatmap(dw, panel, token))
    title = f"Depth-attention weights — {model_title(name, dw.residual)} · {PANELS[panel]}"
    layout(fig, title, "source", "consumer site", subtitle=_token_note(dw, token))
    fig.update_layout(coloraxis=_colour_axis(_shared_zmax([dw], zmax, panel, token)))
    fig.update_yaxes(autorange="reversed")
    return fig


def depth_heatmaps(dws, names, panel: str = "all", zmax: float | None = None, token: int | None = None):
    """Several models' depth-weight heatmaps side by side on ONE shared colour scale.

    Args:
        dws: DepthWeights, one per model.
        names: display names, one per model.
        panel: "all", "attn", "mlp" or "readout".
        zmax: top of the shared colour scale; default 0.8 unless an AttnRes weight exceeds it.
        token: None for token means, else a token index of each model's first prompt.
    """
    if len(dws) != len(names) or not dws:
        raise ValueError(f"{len(dws)} results but {len(names)} names")
    titles = [model_title(n, dw.residual) for dw, n in zip(dws, names, strict=True)]
    same_rows = len({len(dw.sites) for dw in dws}) == 1  # then one set of row labels, on the left
    fig = make_subplots(
        rows=1, cols=len(dws), subplot_titles=titles, horizontal_spacing=0.04, shared_yaxes=same_rows
    )
    for col, dw in enumerate(dws, start=1):
        heatmap = _heatmap(dw, panel, token)
        fig.add_trace(heatmap, row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        ticks = sparse_ticks(heatmap.x, 4 if len(heatmap.x) > 10 else 1)  # level labels, same height
        fig.update_xaxes(title_text="source", tickangle=0, tickvals=ticks, row=1, col=col)
    fig.update_yaxes(title_text="consumer site", row=1, col=1)
    title = f"Depth-attention weights — {PANELS[panel]} · {_token_note(None, token)}"
    layout(fig, title, subtitle="one colour scale shared by the models")
    for col, dw in enumerate(dws, start=1):
        if dw.residual == "prenorm":  # under its panel, so every panel title keeps one line
            domain = "x domain" if col == 1 else f"x{col} domain"
            fig.add_annotation(
                text=f"<i>{PRENORM_NOTE}</i>", xref=domain, x=0.5, yref="paper", y=0.0, yshift=-62,
                yanchor="top", showarrow=False, font={"size": 11, "color": "#555"},
            )  # fmt: skip
    colour_axis = _colour_axis(_shared_zmax(dws, zmax, panel, token))
    fig.update_layout(coloraxis=colour_axis, margin={"t": fig.layout.margin.t + 24, "b": 100})
    return fig


def token_source_heatmap(dw, site: int, tokens):
    """Weights of one site's sources at every token of the first prompt (rows = tokens).

    Args:
        dw: a ``probes.DepthWeights``.
        site: the consuming site l (1..L+1).
        tokens: the first prompt's display tokens (``Prompt.tokens``); shown escaped.
    """
    row = int(np.nonzero(np.asarray(dw.sites) == site)[0][0]) if site in set(dw.sites.tolist()) else None
    if row is None:
        raise ValueError(f"site must be one of 1..{len(dw.sites)}, got {site!r}")
    labels = dw.sources[row]
    n_tokens = int(dw.mask[0].sum())
    z = np.asarray(dw.per_token[0, :n_tokens, row, : len(labels)], dtype=np.float64)
    y = [f"{i}: {safe_label(t)}" for i, t in enumerate(list(tokens)[:n_tokens])]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=safe_labels(labels),
            y=y,
            coloraxis="coloraxis",
            hovertemplate="token %{y}<br>source %{x}<br>weight %{z}<extra></extra>",
            xgap=1,
        )
    )
    kind = dw.kinds[row]
    note = PRENORM_NOTE if dw.residual == "prenorm" else ""
    layout(fig, f"Site L{site} ({kind}): weight of each source per token", "source", "token", subtitle=note)
    zmax = weight_zmax(z if dw.residual != "prenorm" and len(labels) > 1 else np.zeros(1))
    fig.update_layout(coloraxis=_colour_axis(zmax), height=max(350, 18 * n_tokens + 150))
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def entropy_chart(dws, names):
    """Mean entropy (nats) of each site's depth weights, with log K_l (uniform) dashed for reference."""
    fig = go.Figure()
    for i, (dw, name) in enumerate(zip(dws, names, strict=True)):
        colour = model_colour(name, dw.residual, i)
        label = model_title(name, dw.residual)
        fig.add_trace(
            go.Scatter(
                x=dw.sites.tolist(),
                y=finite_or_none(dw.entropy),
                name=label,
                mode="lines+markers",
                line={"color": colour},
                hovertemplate="site L%{x}<br>entropy %{y:.4f} nats<extra>" + label + "</extra>",
            )
        )
    longest = max(dws, key=lambda dw: len(dw.sites))
    uniform = [float(np.log(len(s))) for s in longest.sources]
    fig.add_trace(
        go.Scatter(
            x=longest.sites.tolist(),
            y=uniform,
            name="uniform (log K)",
            line={"dash": "dot", "color": "black"},
        )
    )
    return layout(fig, "Entropy of depth-attention weights per site", "consumer site l", "entropy (nats)")


def sinks_table(sinks) -> list[dict]:
    """Rows for a table of depth-attention sinks (one per sink; empty list when there are none)."""
    return [
        {
            "site": f"L{int(site)}",
            "source": safe_label(label),
            "mean weight": round(float(mean), 4),
            "token std": round(float(tstd), 4),
            "prompt std": round(float(pstd), 4),
        }
        for site, label, mean, tstd, pstd in zip(
            sinks.sites, sinks.labels, sinks.mean, sinks.token_std, sinks.prompt_std, strict=True
        )
    ]
