"""Routing weight against causal effect: integrated-gradients attribution per gate, and ablations.

Routing weight alpha says where a layer looks; attribution and ablation say what mattered for the
prediction. They can disagree (ETH, arXiv 2606.13168), so they are drawn side by side.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ._grid import hover_sources, on_grid, site_label, union_columns
from .style import DIVERGING_COLORSCALE, finite_or_none, layout, safe_label, safe_labels, sparse_ticks


def _row(attr, site: int) -> int:
    sites = [int(s) for s in attr.sites]
    if site not in sites:
        raise ValueError(f"site must be one of {sites[0]}..{sites[-1]}, got {site!r}")
    return sites.index(site)


def _target(attr, b: int) -> str:
    return f"target {safe_label(attr.target_tokens[b])} at position {int(attr.positions[b])}"


def attribution_vs_weight(attr, site: int, prompt_index: int = 0, ablation=None):
    """Grouped bars per source of one site: routing weight (left axis) vs IG attribution (right axis),
    and with ``ablation`` the effect of mean-ablating each route alone (right axis, same units).

    The two right-axis bars answer different questions, and the chart says so: IG moves every route
    towards its prompt mean together and shares the total effect along that path (the bars add up to
    it); occlusion sets one route to its mean with the others real (the bars do not add up, routes
    interact). Both replace the route at every position up to the explained one.

    Args:
        attr: a ``probes.GateAttribution``.
        site: the consuming site l (1..L+1).
        prompt_index: which prompt of the batch.
        ablation: a ``probes.RouteAblation`` of the same site and prompts, or None.
    """
    row = _row(attr, site)
    labels = safe_labels(attr.sources[row])
    k = len(labels)
    weight = attr.weight[prompt_index, row, :k]
    attribution = attr.attribution[prompt_index, row, :k]
    fig = go.Figure()
    fig.add_trace(_bar(labels, weight, "routing weight α", 0, "#1f77b4", "y"))
    fig.add_trace(_bar(labels, attribution, "IG attribution (Δ log p)", 1, "#d62728", "y2"))
    right = attribution
    if ablation is not None:
        if ablation.site != site or len(ablation.sources) != k:
            raise ValueError(f"the ablation is of site {ablation.site}, the chart of site {site}")
        effect = ablation.effect[prompt_index]
        fig.add_trace(
            _bar(labels, effect, "occlusion: route alone at its mean (Δ log p)", 2, "#ff9f40", "y2")
        )
        right = np.concatenate([attribution, effect])
    where = site_label(site, _kind(attr, row))
    title = f"Routing weight vs attribution at {where}"
    subtitle = _target(attr, prompt_index)
    if ablation is not None:
        subtitle += (
            "<br>IG: all routes to their means together, credit adds up to the total · occlusion: one route"
            " at its mean, the others real, not additive"
        )
    layout(fig, title, "source", "weight α", subtitle=subtitle)
    _thin_x(fig, labels)
    weight_range, attribution_range = _aligned_ranges(weight, right)
    fig.update_layout(
        barmode="group",
        yaxis={"range": weight_range},
        yaxis2={
            "title": {"text": "attribution (Δ log p)"},
            "overlaying": "y",
            "side": "right",
            "range": attribution_range,
            "showgrid": False,
        },
    )
    return fig


def _thin_x(fig: go.Figure, labels) -> None:
    """Level source labels, every 2nd one when there are more than 10 (half-width charts)."""
    fig.update_xaxes(tickangle=0, tickvals=sparse_ticks(labels, 2 if len(labels) > 10 else 1))


def _bar(labels, values, name: str, group: int, colour: str, axis: str) -> go.Bar:
    return go.Bar(
        x=labels,
        y=finite_or_none(values),
        name=name,
        offsetgroup=group,
        yaxis=axis,
        marker_color=colour,
        hovertemplate="%{x}<br>" + name + " %{y}<extra></extra>",
    )


def _aligned_ranges(weight, attribution) -> tuple[list[float], list[float]]:
    """Axis ranges for weight (left) and attribution (right) that put both zeros at the same height."""
    w_hi = 1.05 * max(float(np.nanmax(weight)) if np.isfinite(weight).any() else 1.0, 1e-9)
    finite = attribution[np.isfinite(attribution)]
    a_lo = 1.05 * min(float(finite.min()) if finite.size else 0.0, 0.0)
    a_hi = 1.05 * max(float(finite.max()) if finite.size else 0.0, 0.0)
    if a_hi - a_lo < 1e-12:
        return [0.0, w_hi], [-1.0, 1.0]
    below = -a_lo / (a_hi - a_lo)  # the share of the axis under zero
    if below >= 1.0:
        return [-w_hi, w_hi], [a_lo, -a_lo]
    return [-w_hi * below / (1.0 - below), w_hi], [a_lo, a_hi]


def _kind(attr, row: int) -> str:
    n_sites = len(attr.sites)
    site = int(attr.sites[row])
    return "readout" if site == n_sites else ("attn" if site % 2 else "mlp")


def attribution_heatmap(attr, prompt_index: int = 0):
    """Site × source heatmap of IG attribution for one prompt (diverging colours centred on 0)."""
    columns = union_columns(attr.sources)
    z = on_grid(attr.attribution[prompt_index], attr.sources, columns)
    finite = np.abs(z[np.isfinite(z)])
    bound = float(finite.max()) if finite.size else 1.0
    rows = [site_label(s, _kind(attr, i)) for i, s in enumerate(attr.sites)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=safe_labels(columns),
            y=rows,
            customdata=hover_sources(attr.sources, columns),
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorscale=DIVERGING_COLORSCALE,
            colorbar={"title": {"text": "Δ log p", "side": "right"}},
            hovertemplate="site %{y}<br>source %{customdata}<br>attribution %{z}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    total = float(np.nansum(attr.attribution[prompt_index]))
    gap = float(attr.convergence_delta[prompt_index])
    subtitle = f"{_target(attr, prompt_index)} · sum {total:.3f} (completeness error {gap:+.1e})"
    layout(fig, "IG attribution per depth gate", "source", "consumer site", subtitle=subtitle)
    _thin_x(fig, safe_labels(columns))
    fig.update_yaxes(autorange="reversed")
    return fig


def ablation_label(result) -> str:
    """'L5 zero_source emb', 'L17 uniform' (escaped)."""
    extra = f" {safe_label(result.source)}" if result.source else ""
    return f"L{result.site} {result.mode}{extra}"


def ablation_chart(results):
    """Bar chart of Δloss (after − before) for a list of ``probes.AblationResult``."""
    labels = [ablation_label(r) for r in results]
    deltas = [float(r.delta_loss) for r in results]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=finite_or_none(deltas),
            marker_color=["#d62728" if d > 0 else "#2ca02c" for d in deltas],
            customdata=[[r.loss_before, r.loss_after] for r in results],
            hovertemplate="%{x}<br>Δloss %{y}<br>before %{customdata[0]:.4f} after %{customdata[1]:.4f}"
            "<extra></extra>",
        )
    )
    layout(fig, "Ablations: change in next-token loss", "ablation (site, mode, source)", "Δ loss (nats)")
    fig.add_hline(y=0.0, line={"color": "black", "width": 1})
    return fig


def ablation_table(result) -> list[dict]:
    """Rows: for each prompt and rank, the top next characters before and after the ablation."""
    rows = []
    for b in range(len(result.positions)):
        for rank in range(result.top_ids_before.shape[1]):
            rows.append(
                {
                    "prompt": b,
                    "rank": rank + 1,
                    "before": safe_label(result.top_tokens_before[b][rank]),
                    "p before": round(float(result.top_probs_before[b, rank]), 4),
                    "after": safe_label(result.top_tokens_after[b][rank]),
                    "p after": round(float(result.top_probs_after[b, rank]), 4),
                }
            )
    return rows
