"""Magnitudes along depth: stream growth (signal dilution), Fig. 5b output per block, Fig. 5c gradients.

Every chart puts all models on one axis, coloured by residual rule (PreNorm grey, Full blue, Block
orange), so the baseline's growth and AttnRes's bounded stream are read against each other.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .style import finite_or_none, layout, log_axis, model_colour, model_title


def _check(results, names) -> None:
    if len(results) != len(names) or not results:
        raise ValueError(f"{len(results)} results but {len(names)} names")


def _lines(
    series,
    names,
    title: str,
    x_title: str,
    y_title: str,
    log_y: bool = False,
    x_prefix: str = "",
    subtitle="",
):
    """One line per model: series is a list of (residual, x values, y values)."""
    fig = go.Figure()
    for i, ((residual, x, y), name) in enumerate(zip(series, names, strict=True)):
        label = model_title(name, residual)
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=finite_or_none(y),
                name=label,
                mode="lines+markers",
                line={"color": model_colour(name, residual, i)},
                hovertemplate=f"{x_prefix}%{{x}}<br>%{{y:.5g}}<extra>{label}</extra>",
            )
        )
    layout(fig, title, x_title, y_title, subtitle=subtitle)
    if log_y:
        log_axis(fig, *[y for _, _, y in series])
    return fig


def norm_growth_chart(norms_list, names, log_y: bool = True):
    """RMS of the stream h_l at every site l = 1..L+1, token mean (baseline vs AttnRes on one axis).

    Args:
        norms_list: ``probes.StreamNorms``, one per model.
        names: display names.
        log_y: logarithmic y axis (PreNorm growth spans decades).
    """
    _check(norms_list, names)
    series = [(n.residual, range(1, len(n.input_rms_mean) + 1), n.input_rms_mean) for n in norms_list]
    return _lines(series, names, "Stream magnitude RMS(h_l) per site", "site l", "RMS(h_l)", log_y, "L")


def update_ratio_chart(norms_list, names):
    """||v_l|| / ||h_l||: how loud each layer's output is against its own input (log y)."""
    _check(norms_list, names)
    series = [(n.residual, range(1, len(n.update_ratio_mean) + 1), n.update_ratio_mean) for n in norms_list]
    return _lines(
        series, names, "Update ratio ||v_l|| / ||h_l|| per layer", "layer l", "||v_l|| / ||h_l||", True, "L"
    )


def update_share_chart(norms_list, names):
    """Share of h_{l+1} held by the term that carries v_l (PreNorm: shrinks with depth = dilution)."""
    _check(norms_list, names)
    series = [(n.residual, range(1, len(n.update_share_mean) + 1), n.update_share_mean) for n in norms_list]
    fig = _lines(
        series, names, "Share of the next input held by layer l's update", "layer l", "share", False, "L"
    )
    fig.add_hline(y=0.0, line={"color": "black", "width": 1})
    return fig


def block_output_chart(norms_list, names):
    """Paper Fig. 5b: RMS of the carried state after each Transformer block (token mean).

    The quantity is each rule's carried state, which is not the same thing in the three rules, and the
    subtitle names what each line is: PreNorm carries the stream (grows with depth); Block AttnRes
    the running block sum (resets at block boundaries: saw-tooth); Full AttnRes no sum at all, so its
    line is the block's last output v_2i (its MLP's).
    """
    _check(norms_list, names)
    series = [(n.residual, range(1, len(n.block_output_rms) + 1), n.block_output_rms) for n in norms_list]
    carried = {
        "prenorm": "PreNorm: the stream h",
        "block": "Block: the running block sum",
        "full": "Full: its MLP output",
    }
    shown = dict.fromkeys(n.residual for n in norms_list)
    subtitle = "RMS after each block of " + " · ".join(carried[r] for r in shown if r in carried)
    return _lines(
        series,
        names,
        "Fig. 5b — output magnitude per Transformer block",
        "Transformer block",
        "RMS",
        False,
        "block ",
        subtitle,
    )


def gradient_chart(grads_list, names):
    """Paper Fig. 5c: L2 norm of d loss / d parameters of each Transformer block (log y).

    Args:
        grads_list: ``probes.GradientNorms``, one per model.
        names: display names.
    """
    _check(grads_list, names)
    series = [
        (g.residual, range(1, len(g.block_param_grad_norm) + 1), np.asarray(g.block_param_grad_norm))
        for g in grads_list
    ]
    return _lines(
        series,
        names,
        "Fig. 5c — gradient magnitude per Transformer block",
        "Transformer block",
        "||∂loss/∂θ_block||",
        True,
        "block ",
    )
