"""A toy residual stream that shows signal dilution (paper §1) without any model.

The toy, in exact arithmetic (pure numpy):

* sources: v_0 (the embedding) has norm 1; layer l = 1..L writes an update v_l of norm
  u_l = update_norm * growth ** (l - 1). All directions are orthonormal (QR of a seeded random
  matrix), so every inner product between different sources is exactly 0.
* ``rule="prenorm"``: h_l = v_0 + sum_{i<l} v_i (weight 1 on every source), so
  ||h_l||^2 = 1 + sum_{i<l} u_i^2 and the share of v_i in h_l is
  share_{i->l} = <v_i, h_l> / ||h_l||^2 = u_i^2 / (1 + sum_{j<l} u_j^2): it shrinks as depth grows.
* ``rule="attnres"``: h_l = sum_{i<l} alpha_{i->l} v_i with a depth softmax
  alpha_{i->l} = softmax_i(-recency * (l - 1 - i)) that favours recent sources (a stand-in for a
  learned query). Then ||h_l||^2 = sum_i alpha_i^2 u_i^2 and
  share_{i->l} = alpha_i^2 u_i^2 / sum_j alpha_j^2 u_j^2; the newest source keeps a share bounded
  away from 0 however deep the stack (for growth = 1 it is 1 / sum_{j<l} e^(-2 recency j),
  which is at least 1 - e^(-2 recency)).

Site L+1 is the final stream. Shares sum to 1 over sources at every site.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import MODEL_COLOURS, layout

RULES = ("prenorm", "attnres")


def _mixing(depth: int, rule: str, recency: float) -> np.ndarray:
    """[L+1, L+1] weight of v_i (column) in h_l (row l-1), zero for i >= l."""
    weights = np.zeros((depth + 1, depth + 1))
    for row in range(depth + 1):  # row = l - 1, sources i = 0..l-1
        if rule == "prenorm":
            weights[row, : row + 1] = 1.0
        else:
            logits = -recency * (row - np.arange(row + 1))
            alpha = np.exp(logits - logits.max())
            weights[row, : row + 1] = alpha / alpha.sum()
    return weights


def simulate_dilution(
    depth: int, update_norm: float, growth: float, rule: str = "prenorm", seed: int = 0, recency: float = 1.0
) -> dict:
    """Runs the toy stream (see the module docstring for the formulas).

    Args:
        depth: L, the number of layers writing updates.
        update_norm: u_1, the norm of the first layer's update.
        growth: factor between consecutive update norms (1 = all equal).
        rule: "prenorm" (plain sum) or "attnres" (depth softmax favouring recent sources).
        seed: seeds the random orthonormal directions.
        recency: the attnres softmax's preference for recent sources (logit slope per layer).

    Returns:
        dict of numpy arrays: ``layers`` [L] (1..L), ``sites`` [L+1] (1..L+1), ``update_norms`` [L],
        ``weights`` [L+1, L+1] (alpha_{i->l}), ``stream_norm`` [L+1] (||h_l||), ``share`` [L+1, L+1]
        (share of v_i in h_l), ``share_next`` [L] (share of v_l in h_{l+1}), ``share_final`` [L+1]
        (share of v_0..v_L in h_{L+1}), and ``rule`` (a 0-d string array).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    rng = np.random.default_rng(seed)
    dim = max(64, depth + 1)
    directions, _ = np.linalg.qr(rng.standard_normal((dim, depth + 1)))  # orthonormal columns
    update_norms = update_norm * growth ** np.arange(depth, dtype=np.float64)
    norms = np.concatenate([[1.0], update_norms])
    sources = directions * norms  # [d, L+1], column i = v_i
    weights = _mixing(depth, rule, recency)
    streams = weights @ sources.T  # [L+1, d], row l-1 = h_l
    stream_sq = (streams**2).sum(1)
    share = weights * (streams @ sources) / stream_sq[:, None]  # <alpha_i v_i, h_l> / ||h_l||^2
    return {
        "rule": np.array(rule),
        "layers": np.arange(1, depth + 1),
        "sites": np.arange(1, depth + 2),
        "update_norms": update_norms,
        "weights": weights,
        "stream_norm": np.sqrt(stream_sq),
        "share": share,
        "share_next": np.array([share[l, l] for l in range(1, depth + 1)]),
        "share_final": share[depth],
    }


def dilution_chart(sim):
    """Two panels: stream norm ||h_l|| per site, and the share of each layer's update in the next input.

    Args:
        sim: one ``simulate_dilution`` result or a list of them (e.g. prenorm and attnres).
    """
    sims = [sim] if isinstance(sim, dict) else list(sim)
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("stream norm ||h_l||", "share of v_l in the next input h_{l+1}")
    )
    for s in sims:
        rule = str(s["rule"])
        colour = MODEL_COLOURS["prenorm" if rule == "prenorm" else "full"]
        fig.add_trace(
            go.Scatter(
                x=s["sites"].tolist(),
                y=s["stream_norm"].tolist(),
                name=f"{rule}: ||h_l||",
                line={"color": colour},
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=s["layers"].tolist(),
                y=s["share_next"].tolist(),
                name=f"{rule}: share",
                line={"color": colour, "dash": "dash"},
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="site l", row=1, col=1)
    fig.update_xaxes(title_text="layer l", row=1, col=2)
    fig.update_yaxes(title_text="norm", row=1, col=1)
    fig.update_yaxes(title_text="share", range=[0, 1.05], row=1, col=2)
    depth = int(sims[0]["layers"][-1])
    return layout(fig, f"Signal dilution in a toy stream of {depth} layers")
