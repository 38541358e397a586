"""Which earlier layers each layer reads: a layer graph, the depth-mixing matrix (Fig. 9), a summary.

The graph lays emb, L1..LL and the readout along one axis. An arc runs from a source to the site that
reads it, with width proportional to the strength (AttnRes: mean weight alpha; PreNorm: the source's
signed share of h_l, since every weight is 1). Arcs into attention inputs bend above the axis, arcs
into MLP inputs below. Block AttnRes sources are block sums: each is drawn at its block's last layer
and labelled (B1, ...); the partial sum sits at the layer just before the consumer.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from attnres.sources import SourceRule

from ._grid import site_label
from .style import (
    PRENORM_NOTE,
    SEQUENTIAL_COLORSCALE,
    layout,
    model_title,
    safe_label,
    safe_labels,
    safe_text,
    sparse_ticks,
    weight_zmax,
)

KIND_COLOURS = {"attn": "#1f77b4", "mlp": "#ff7f0e", "readout": "#2ca02c"}
ARC_STEPS = 24


def source_rule(retrieval) -> SourceRule:
    """Which outputs each of the retrieval's source labels sums (attnres.sources).

    A source is drawn at its latest output: emb at 0, Li at i, Bn at its block's last layer, the
    partial sum at l-1.
    """
    return SourceRule(retrieval.residual, len(retrieval.sites) - 1, retrieval.attnres_block_size)


def strengths(retrieval) -> np.ndarray:
    """[S, Kmax] what the graph draws: mean alpha (AttnRes) or mean share (PreNorm)."""
    return retrieval.share_mean if retrieval.strength_kind == "share" else retrieval.weight_mean


def _arc(x0: float, x1: float, bend: float) -> tuple[list[float], list[float]]:
    """Points of a quadratic Bezier from (x0, 0) to (x1, 0), peak height |bend| * span / 4 * 2."""
    t = np.linspace(0.0, 1.0, ARC_STEPS)
    control = bend * max(abs(x1 - x0), 0.6) * 0.35
    xs = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * (x0 + x1) / 2 + t**2 * x1
    ys = 2 * (1 - t) * t * control
    return xs.tolist(), ys.tolist()


def arcs(retrieval, threshold: float = 0.1) -> list[dict]:
    """Every (source, consumer) pair with |strength| > threshold: source, site, kind, x0, x1, strength."""
    rule, table, out = source_rule(retrieval), strengths(retrieval), []
    for row, (site, kind, labels) in enumerate(
        zip(retrieval.sites, retrieval.kinds, retrieval.sources, strict=True)
    ):
        for k, label in enumerate(labels):
            value = float(table[row, k])
            if np.isfinite(value) and abs(value) > threshold:
                x0 = rule.last_member(label, int(site))
                out.append(
                    {
                        "source": label,
                        "site": int(site),
                        "kind": kind,
                        "x0": x0,
                        "x1": int(site),
                        "strength": value,
                    }
                )
    return out


def _block_names(retrieval) -> list[str]:
    labels = {lab for labs in retrieval.sources for lab in labs if lab.startswith("B")}
    return sorted(labels, key=lambda s: int(s[1:]))


def _ticks(retrieval) -> tuple[list[int], list[str]]:
    """Tick positions and labels of the layer axis; a block sum's label under its last layer.

    Only emb, out and every 2nd (L <= 8) or 4th layer are labelled, so a third-width chart stays
    legible; the others keep an empty label (hover names every node).
    """
    L, rule = len(retrieval.sites) - 1, source_rule(retrieval)
    step = 2 if L <= 8 else 4
    text = ["emb"] + [f"L{l}" if l % step == 0 and l < L else "" for l in range(1, L + 1)] + ["out"]
    for name in _block_names(retrieval):
        x = rule.last_member(name, 0)
        text[x] += f"<br><b>{safe_label(name)}</b>"
    return list(range(L + 2)), text


def _node_trace(retrieval) -> go.Scatter:
    L = len(retrieval.sites) - 1
    colours = ["#444"] + [KIND_COLOURS[k] for k in retrieval.kinds]
    return go.Scatter(
        x=list(range(L + 2)),
        y=[0.0] * (L + 2),
        mode="markers",
        marker={"size": 11, "color": colours, "line": {"color": "white", "width": 1}},
        hovertext=["v_0 (embedding)"]
        + [site_label(s, k) for s, k in zip(retrieval.sites, retrieval.kinds, strict=True)],
        hoverinfo="text",
        showlegend=False,
        name="layers",
    )


def _block_sum_trace(retrieval) -> go.Scatter | None:
    """Open diamonds where block sums sit (Block AttnRes only)."""
    if retrieval.residual != "block":
        return None
    rule, names = source_rule(retrieval), _block_names(retrieval)
    members = [rule.members(n, 0) for n in names]
    xs = [m[-1] for m in members]
    return go.Scatter(
        x=xs,
        y=[0.0] * len(xs),
        mode="markers",
        marker={"size": 22, "symbol": "diamond-open", "color": "black", "line": {"width": 2}},
        hovertext=[
            f"{safe_label(n)} = L{m[0]} + .. + L{m[-1]} (block sum)"
            for n, m in zip(names, members, strict=True)
        ],
        hoverinfo="text",
        name="block sum",
    )


def _legend_entries(fig: go.Figure) -> None:
    for kind, text in (
        ("attn", "into attention"),
        ("mlp", "into MLP"),
        ("readout", "into readout"),
    ):
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="lines", line={"color": KIND_COLOURS[kind], "width": 4}, name=text
            )
        )


def retrieval_graph(retrieval, threshold: float = 0.1, name: str = ""):
    """Layer graph of who reads whom: arcs above the threshold, width proportional to strength.

    Args:
        retrieval: a ``probes.Retrieval``.
        threshold: arcs with |strength| <= threshold are not drawn.
        name: the model's display name.

    Returns:
        A plotly Figure; each arc is one trace with ``meta = {"arc": True, "strength": ...}``.
    """
    fig = go.Figure()
    what = "share of h_l" if retrieval.strength_kind == "share" else "mean weight α"
    for arc in arcs(retrieval, threshold):
        bend = -1.0 if arc["kind"] == "mlp" else 1.0
        xs, ys = _arc(arc["x0"], arc["x1"], bend)
        where = site_label(arc["site"], arc["kind"])
        text = f"{safe_label(arc['source'])} → {where}<br>{what} {arc['strength']:.4f}"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={
                    "width": min(14.0, max(0.5, 12 * abs(arc["strength"]))),
                    "color": KIND_COLOURS[arc["kind"]],
                    "dash": "dot" if arc["strength"] < 0 else "solid",
                },
                opacity=0.55,
                hovertext=text,
                hoverinfo="text",
                showlegend=False,
                name=f"{safe_label(arc['source'])}→L{arc['site']}",
                meta={"arc": True, "strength": arc["strength"]},
            )
        )
    fig.add_trace(_node_trace(retrieval))
    block_sums = _block_sum_trace(retrieval)
    if block_sums is not None:
        fig.add_trace(block_sums)
    _legend_entries(fig)
    title = f"Who reads whom — {model_title(name, retrieval.residual)}"
    layout(
        fig,
        title,
        "layer (arcs ↑ attention, ↓ MLP)",
        subtitle=f"{_rule(retrieval)}<br>arcs: {what} > {threshold:g}",
    )
    fig.update_yaxes(visible=False)
    tickvals, ticktext = _ticks(retrieval)
    fig.update_xaxes(showgrid=False, zeroline=False, tickvals=tickvals, ticktext=ticktext, tickangle=0)
    return fig


def _rule(retrieval) -> str:
    """One subtitle line, the same length for every model so side-by-side plots line up."""
    return PRENORM_NOTE if retrieval.residual == "prenorm" else "AttnRes: softmax weight α per source"


def mixing_matrix(retrieval, name: str = ""):
    """Paper Fig. 9: mean weight each h_l gives each v_i (PreNorm: the all-ones lower triangle)."""
    L = len(retrieval.sites) - 1
    columns = ["emb"] + [f"L{i}" for i in range(1, L + 1)]
    rows = [site_label(s, k) for s, k in zip(retrieval.sites, retrieval.kinds, strict=True)]
    z = np.asarray(retrieval.mixing, dtype=np.float64)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=safe_labels(columns),
            y=rows,
            zmin=0.0,
            zmax=weight_zmax(z),
            colorscale=SEQUENTIAL_COLORSCALE,
            hovertemplate="h at %{y}<br>v from %{x}<br>weight %{z}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    title = f"Fig. 9 — {model_title(name, retrieval.residual)}"
    layout(
        fig,
        title,
        "source v_i",
        "site",
        subtitle=f"depth-mixing matrix: weight of v_i in h_l<br>{_rule(retrieval)}",
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=0, tickvals=sparse_ticks(safe_labels(columns), 4))
    return fig


def retrieval_summary(retrievals, names) -> list[dict]:
    """Table rows: per model and site, the strongest sources with their strength (escaped labels)."""
    rows = []
    for retrieval, name in zip(retrievals, names, strict=True):
        table = strengths(retrieval)
        for row, (site, kind) in enumerate(zip(retrieval.sites, retrieval.kinds, strict=True)):
            entry = {
                "model": safe_text(name),
                "site": site_label(site, kind),
                "ranked by": retrieval.strength_kind,
            }
            for rank, k in enumerate(retrieval.top_sources[row], start=1):
                label = safe_label(retrieval.sources[row][k]) if k >= 0 else ""
                entry[f"top {rank}"] = f"{label} ({float(table[row, k]):.3f})" if k >= 0 else "—"
            rows.append(entry)
    return rows
