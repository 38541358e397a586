"""Logit lens: what each site's stream would predict if the model stopped there."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from probes.prompt import token_strings

from ._grid import site_labels
from .style import SEQUENTIAL_COLORSCALE, finite_or_none, layout, model_title, safe_label

METRICS = {  # metric -> (subtitle, colour-bar title, colour scale)
    "target_rank": ("rank of the true next token (0 = top-1)", "rank of the next character", "Viridis_r"),
    "entropy": ("entropy of the prediction (nats)", "entropy (nats)", SEQUENTIAL_COLORSCALE),
    "kl": ("KL(final || lens) (nats)", "KL to final (nats)", "Magma_r"),
}
FIELDS = {"target_rank": "target_rank", "entropy": "entropy", "kl": "kl_to_final"}


def lens_grid(lens, metric: str = "target_rank", prompt_index: int = 0) -> np.ndarray:
    """[S, T] the heatmap's numbers: the probe's metric for one prompt, sites × real positions.

    Ranks of -1 (no next token to rank) become NaN so they are left blank.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    n_tokens = int(lens.mask[prompt_index].sum())
    values = np.asarray(getattr(lens, FIELDS[metric])[prompt_index, :n_tokens], dtype=np.float64).T
    if metric == "target_rank":
        values = np.where(values < 0, np.nan, values)
    return values


def logit_lens_heatmap(lens, metric: str = "target_rank", name: str = "", tokens=None, tokenizer=None):
    """Heatmap of a logit-lens metric, site (rows) × token position (columns), first prompt.

    Args:
        lens: a ``probes.LogitLens``.
        metric: "target_rank", "entropy" or "kl".
        name: the model's display name.
        tokens: the prompt's display tokens, for the column labels (escaped); default positions.
        tokenizer: when given, hover shows each cell's top-1 prediction as text.
    """
    z = lens_grid(lens, metric)
    n_tokens = z.shape[1]
    tokens = list(tokens)[:n_tokens] if tokens is not None else [""] * n_tokens
    columns = [f"{i}: {safe_label(t)}" if t else str(i) for i, t in enumerate(tokens)]
    top1 = lens.top_ids[0, :n_tokens, :, 0].T  # [S, T]
    hover = [  # blank where the lens did not read (ids -1: a first reading of a long prompt)
        [
            safe_label(text) if i >= 0 else ""
            for i, text in zip(row, token_strings(tokenizer, row.clip(0), missing="#{}"), strict=True)
        ]
        for row in top1
    ]
    label, bar_title, colours = METRICS[metric]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=site_labels(lens.sites, lens.kinds),
            customdata=hover,
            colorscale=colours,
            colorbar={"title": {"text": bar_title, "side": "right"}},
            hovertemplate="site %{y}<br>position %{x}<br>"
            + bar_title
            + " %{z}<br>top-1 %{customdata}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    layout(fig, f"Logit lens — {model_title(name, lens.residual)}", "position: token", "site", subtitle=label)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(type="category")
    return fig


def logit_lens_table(lens, position: int = -1, tokenizer=None) -> list[dict]:
    """Rows, one per site: the top-k predictions read off h_l at one position of the first prompt.

    Args:
        lens: a ``probes.LogitLens``.
        position: token index; negative counts from the last real token.
        tokenizer: when given, predictions are shown as text (escaped), else as ids.
    """
    n_tokens = int(lens.mask[0].sum())
    t = position + n_tokens if position < 0 else position
    if not 0 <= t < n_tokens:
        raise ValueError(f"position must be within the {n_tokens} real tokens, got {position}")
    rows = []
    for s, label in enumerate(site_labels(lens.sites, lens.kinds)):
        row = {"site": label}
        texts = token_strings(tokenizer, lens.top_ids[0, t, s], missing="#{}")
        for rank, (text, p) in enumerate(zip(texts, lens.top_probs[0, t, s], strict=True), 1):
            row[f"top {rank}"] = f"{safe_label(text)} ({float(p):.3f})"
        rank = int(lens.target_rank[0, t, s])
        row["target rank"] = rank if rank >= 0 else None
        row["entropy"] = finite_or_none([lens.entropy[0, t, s]])[0]
        row["KL to final"] = finite_or_none([lens.kl_to_final[0, t, s]])[0]
        rows.append(row)
    return rows
