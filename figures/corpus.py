"""Corpus-level figures: heatmaps of corpus means and their spread, lines with 95% bands, one prompt
against the corpus, sinks with their across-sequence spread, and two models' differences.

Inputs are ``probes.corpus`` results. Every band is the 95% t-interval over sequences of the mean
(``Estimate.ci_half``); every subtitle says how many sequences and tokens the figure rests on.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._grid import hover_sources, on_grid, site_label, site_labels, union_columns
from .style import (
    DIVERGING_COLORSCALE,
    SEQUENTIAL_COLORSCALE,
    WEIGHT_COLORSCALE,
    finite_or_none,
    layout,
    log_axis,
    model_colour,
    model_title,
    safe_label,
    safe_labels,
    safe_text,
    sparse_ticks,
    weight_zmax,
)

VIEWS = {
    "mean": "corpus mean",
    "seq_std": "spread across sequences (std of per-sequence means)",
    "token_std": "spread across tokens (std)",
    "ci_half": "95% CI half width",
}
PANELS = {"all": "all sites", "attn": "pre-attention", "mlp": "pre-MLP", "readout": "output readout"}


def evidence_note(stats_list) -> str:
    """'128 sequences · 32,768 tokens' (or one such line per distinct pair)."""
    pairs = dict.fromkeys((s.n_sequences, s.n_tokens) for s in stats_list)
    return " / ".join(f"{n:,} sequences · {t:,} tokens" for n, t in pairs)


def _rows(stats, panel: str) -> list[int]:
    if panel not in PANELS:
        raise ValueError(f"panel must be one of {', '.join(PANELS)}, got {panel!r}")
    return [i for i, k in enumerate(stats.kinds) if panel == "all" or k == panel]


def corpus_grid(stats, view: str = "mean", panel: str = "all"):
    """(z [rows, cols], columns, row labels, hover text) of one model's alpha statistic."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    rows = _rows(stats, panel)
    sources = [stats.sources[i] for i in rows]
    columns = union_columns(sources)
    a = stats.alpha
    grids = {name: on_grid(getattr(a, name)[rows], sources, columns) for name in ("seq_mean", "ci_half")}
    grids["seq_std"] = on_grid(a.seq_std[rows], sources, columns)
    q10, q90 = (on_grid(stats.alpha_quantiles[q][rows], sources, columns) for q in (0, -1))
    z = on_grid(getattr(a, "seq_mean" if view == "mean" else view)[rows], sources, columns)
    labels = hover_sources(sources, columns)
    hover = [
        [
            f"source {labels[r][c]}<br>mean {grids['seq_mean'][r, c]:.4f} ± {grids['ci_half'][r, c]:.4f}"
            f"<br>across sequences std {grids['seq_std'][r, c]:.4f}<br>tokens 10–90%: "
            f"{q10[r, c]:.3f}–{q90[r, c]:.3f}"
            if labels[r][c]
            else ""
            for c in range(len(columns))
        ]
        for r in range(len(rows))
    ]
    return z, columns, site_labels(stats.sites[rows], [stats.kinds[i] for i in rows]), hover


def corpus_heatmaps(stats_list, names, view: str = "mean", panel: str = "all"):
    """Each model's corpus-mean routing weights (or their spread) side by side, one colour scale.

    Args:
        stats_list: ``CorpusStats``, one per model.
        names: display names.
        view: "mean", "seq_std" (across sequences), "token_std" or "ci_half".
        panel: "all", "attn", "mlp" or "readout".
    """
    if len(stats_list) != len(names) or not stats_list:
        raise ValueError(f"{len(stats_list)} results but {len(names)} names")
    titles = [model_title(n, s.residual) for s, n in zip(stats_list, names, strict=True)]
    fig = make_subplots(rows=1, cols=len(stats_list), subplot_titles=titles, horizontal_spacing=0.04)
    grids = []
    for col, stats in enumerate(stats_list, start=1):
        z, columns, rows, hover = corpus_grid(stats, view, panel)
        grids.append(z if stats.residual != "prenorm" else np.zeros(1))
        fig.add_trace(
            go.Heatmap(z=z, x=safe_labels(columns), y=rows, customdata=hover, coloraxis="coloraxis",
                       hovertemplate="site %{y}<br>%{customdata}<extra></extra>", xgap=1, ygap=1),
            row=1, col=col,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", row=1, col=col)
        ticks = sparse_ticks(safe_labels(columns), 4 if len(columns) > 10 else 1)
        fig.update_xaxes(title_text="source", tickvals=ticks, tickangle=0, row=1, col=col)
    fig.update_yaxes(title_text="consumer site", row=1, col=1)
    if view == "mean":
        axis = {"cmin": 0.0, "cmax": weight_zmax(*grids), "colorscale": WEIGHT_COLORSCALE}
    else:
        top = max([float(np.nanmax(g)) for g in grids if np.isfinite(g).any()] or [1e-6])
        axis = {"cmin": 0.0, "cmax": max(top, 1e-6), "colorscale": SEQUENTIAL_COLORSCALE}
    fig.update_layout(coloraxis={**axis, "colorbar": {"title": {"text": "α" if view == "mean" else "std"}}})
    title = f"Depth-attention weights over the corpus — {PANELS[panel]}"
    return layout(fig, title, subtitle=f"{VIEWS[view]} · {evidence_note(stats_list)}")


def band_chart(stats_list, names, field: str, title: str, x_title: str, y_title: str, log_y: bool = False):
    """One line per model (the mean of per-sequence means) with its 95% CI as a shaded band.

    Args:
        stats_list: ``CorpusStats``, one per model.
        names: display names.
        field: an Estimate field of CorpusStats ("input_rms", "update_ratio", "entropy", ...).
        title, x_title, y_title: the chart's labels.
        log_y: logarithmic y axis.
    """
    if len(stats_list) != len(names) or not stats_list:
        raise ValueError(f"{len(stats_list)} results but {len(names)} names")
    fig, values = go.Figure(), []
    for i, (stats, name) in enumerate(zip(stats_list, names, strict=True)):
        est = getattr(stats, field)
        if est is None:
            continue
        colour, label = model_colour(name, stats.residual, i), model_title(name, stats.residual)
        x = list(range(1, len(est.seq_mean) + 1))
        low, high = np.nan_to_num(est.ci_low, nan=np.nan), np.nan_to_num(est.ci_high, nan=np.nan)
        values += [est.seq_mean, low, high]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=finite_or_none(np.concatenate([high, low[::-1]])),
                                 fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0},
                                 hoverinfo="skip", showlegend=False, name=f"{label} 95% CI"))  # fmt: skip
        fig.add_trace(
            go.Scatter(x=x, y=finite_or_none(est.seq_mean), name=label, mode="lines+markers",
                       line={"color": colour}, customdata=finite_or_none(est.ci_half),
                       hovertemplate="%{x}<br>%{y:.5g} ± %{customdata:.3g}<extra>" + label + "</extra>")
        )  # fmt: skip
    layout(
        fig, title, x_title, y_title, subtitle=f"mean ± 95% CI over sequences · {evidence_note(stats_list)}"
    )
    if log_y:
        log_axis(fig, *[v[np.isfinite(v)] for v in values])
    return fig


def collapse_chart(stats_list, names):
    """Routing collapse: each site's largest weight (mean ± CI) against a uniform site's 1/K_l."""
    fig = band_chart(stats_list, names, "max_weight", "Largest weight per site", "consumer site l", "max α")
    longest = max(stats_list, key=lambda s: s.n_sites)
    fig.add_trace(
        go.Scatter(x=longest.sites.tolist(), y=longest.uniform_weight.tolist(), name="uniform (1/K)",
                   line={"dash": "dot", "color": "black"})
    )  # fmt: skip
    return fig


def alpha_rms_chart(stats_list, names):
    """Pearson r of alpha with its source's RMS, pooled over each site's (token, source) pairs."""
    fig = go.Figure()
    for i, (stats, name) in enumerate(zip(stats_list, names, strict=True)):
        label = model_title(name, stats.residual)
        fig.add_trace(
            go.Scatter(x=stats.sites.tolist(), y=finite_or_none(stats.alpha_rms_corr_site), name=label,
                       mode="lines+markers", line={"color": model_colour(name, stats.residual, i)})
        )  # fmt: skip
    fig.add_hline(y=0.0, line={"color": "black", "width": 1})
    title = "Does a louder source draw more weight?"
    return layout(fig, title, "consumer site l", "r(α, RMS of source)",
                  subtitle=f"correlation over tokens and sources · {evidence_note(stats_list)}")  # fmt: skip


def prompt_vs_corpus_heatmap(pvc, name: str = "", tokens_note: str = ""):
    """z of one prompt's mean weights against the corpus (diverging, clipped at ±6); cells where the
    prompt is unusual are marked with a dot."""
    sources = list(pvc.sources)
    columns = union_columns(sources)
    z = on_grid(pvc.z, sources, columns)
    unusual = on_grid(pvc.unusual.astype(float), sources, columns)
    prompt, corpus = on_grid(pvc.prompt_mean, sources, columns), on_grid(pvc.corpus_mean, sources, columns)
    rows = [f"L{int(s)}" for s in pvc.sites]
    hover = [[f"prompt {prompt[r, c]:.3f} · corpus {corpus[r, c]:.3f}" for c in range(len(columns))]
             for r in range(len(rows))]  # fmt: skip
    fig = go.Figure(
        go.Heatmap(z=np.clip(z, -6, 6), x=safe_labels(columns), y=rows, customdata=hover, zmid=0, zmin=-6,
                   zmax=6, colorscale=DIVERGING_COLORSCALE, colorbar={"title": {"text": "z"}}, xgap=1, ygap=1,
                   hovertemplate="site %{y} · source %{x}<br>z %{z:.2f}<br>%{customdata}<extra></extra>")
    )  # fmt: skip
    marks = np.argwhere(unusual == 1)
    fig.add_trace(
        go.Scatter(x=[safe_label(columns[c]) for _, c in marks], y=[rows[r] for r, _ in marks],
                   mode="markers",
                   marker={"symbol": "circle-open", "size": 10, "color": "black"}, name="unusual",
                   hoverinfo="skip")
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    subtitle = (f"z = (prompt − corpus) / across-sequence std · {int(pvc.unusual.sum())} unusual cells "
                f"(|z| ≥ {pvc.z_threshold:g}, |Δα| ≥ {pvc.min_difference:g}) · "
                f"{pvc.n_sequences:,} sequences")  # fmt: skip
    return layout(fig, f"This prompt vs the corpus — {safe_label(name)}", "source", "consumer site",
                  subtitle=subtitle + (f" · {tokens_note}" if tokens_note else ""))  # fmt: skip


def corpus_sinks_table(sinks) -> list[dict]:
    """Rows for the sinks table: mean with its 95% CI, spread over tokens and across sequences."""
    return [
        {
            "site": f"L{int(site)}",
            "source": safe_label(label),
            "mean weight": round(float(mean), 4),
            "95% CI": f"± {float(ci):.4f}",
            "token std": round(float(tstd), 4),
            "across-sequence std": round(float(sstd), 4),
            "10% of tokens below": round(float(q10), 3),
        }
        for site, label, mean, ci, tstd, sstd, q10 in zip(
            sinks.sites,
            sinks.labels,
            sinks.mean,
            sinks.ci_half,
            sinks.token_std,
            sinks.seq_std,
            sinks.q10,
            strict=True,
        )  # fmt: skip
    ]


def corpus_top_sources_table(stats_list, names, k: int = 3) -> list[dict]:
    """Rows per AttnRes model and site: the k sources of largest corpus-mean weight, each ± its 95% CI."""
    rows = []
    for stats, name in zip(stats_list, names, strict=True):
        if stats.residual == "prenorm":
            continue
        for row, (site, kind) in enumerate(zip(stats.sites, stats.kinds, strict=True)):
            mean, ci = stats.alpha.seq_mean[row], stats.alpha.ci_half[row]
            order = [
                j
                for j in np.argsort(-np.nan_to_num(mean, nan=-np.inf), kind="stable")
                if np.isfinite(mean[j])
            ]
            entry = {"model": safe_text(name), "site": site_label(site, kind)}
            for rank in range(k):
                j = order[rank] if rank < len(order) else None
                text = (
                    f"{safe_label(stats.sources[row][j])} ({mean[j]:.3f} ± {ci[j]:.3f})"
                    if j is not None
                    else "—"
                )
                entry[f"top {rank + 1}"] = text
            rows.append(entry)
    return rows


def corpus_diff_heatmap(diff, names):
    """b − a of the corpus-mean weights, drawn only where the 95% intervals say the models differ."""
    sources = list(diff.sources)
    columns = union_columns(sources)
    shown = np.where(diff.alpha_differs, diff.alpha, np.nan)
    z = on_grid(shown, sources, columns)
    ci = on_grid(diff.alpha_ci, sources, columns)
    raw = on_grid(diff.alpha, sources, columns)
    rows = [f"L{int(s)}" for s in diff.sites]
    hover = [[f"Δα {raw[r, c]:+.4f} ± {ci[r, c]:.4f}" for c in range(len(columns))] for r in range(len(rows))]
    top = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.1
    fig = go.Figure(
        go.Heatmap(z=z, x=safe_labels(columns), y=rows, customdata=hover, zmid=0, zmin=-top, zmax=top,
                   colorscale=DIVERGING_COLORSCALE, colorbar={"title": {"text": "Δα"}}, xgap=1, ygap=1,
                   hovertemplate="site %{y} · source %{x}<br>%{customdata}<extra></extra>")
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    a, b = (safe_label(n) for n in names)
    cells = int(np.isfinite(diff.alpha).sum())
    note = f"{int(diff.alpha_differs.sum())} of {cells} cells differ beyond the 95% CI"
    return layout(fig, f"Routing difference {b} − {a}", "source", "consumer site", subtitle=note)


def corpus_diff_table(diff) -> list[dict]:
    """The differences the intervals support, largest |Δ| / CI first."""
    return [
        {
            "quantity": row["quantity"],
            "site": f"L{row['site']}",
            "source": safe_label(row["source"]),
            "difference": round(row["difference"], 4),
            "95% CI": f"± {row['ci_half']:.4f}",
        }
        for row in diff.largest
    ]
