"""Signal dilution: residual-stream norms per layer (log axis), update-to-stream ratios, and the
paper's Fig. 5b (output magnitude per block) and Fig. 5c (gradient magnitude per block)."""

from __future__ import annotations

from functools import partial

import streamlit as st

import figures
from app import progressive, state
from app.charts import chart
from app.common import (
    chart_placeholder,
    header,
    names_of,
    need_models,
    probe,
    shared_figure,
    sidebar,
    view_key,
)
from app.corpus import corpus_mode, render_dilution

PROBES = ("stream_norms", "gradient_norms")  # the gradients take a backward pass of their own


def _figure(settings, builder, results: list, *choices):
    """``builder(results, names, ...)`` of the chosen models, built once for every session."""
    build = partial(builder, results, names_of(settings), *choices)
    return shared_figure((builder.__name__, *view_key(settings, *choices)), build)


def render_norms(settings, norms: list, slot) -> None:
    """Norm growth (in ``slot``), update ratios and shares, and Fig. 5b."""
    data = dict(zip(names_of(settings), norms, strict=True))
    with slot.container():
        fig = _figure(settings, figures.norm_growth_chart, norms, st.session_state["log_y"])
        chart(fig, "dilution_norms", data=data)
    left, right = st.columns(2)
    with left:
        chart(_figure(settings, figures.update_ratio_chart, norms), "dilution_update_ratio", data=data)
    with right:
        chart(_figure(settings, figures.update_share_chart, norms), "dilution_update_share", data=data)


def main() -> None:
    header(
        "Signal dilution",
        "With a plain residual every layer adds to one running sum, so the stream grows with depth and "
        "each new update is a smaller share of it. Baseline and AttnRes side by side.",
    )
    settings = sidebar(multi=True)
    choice = corpus_mode()
    if not need_models(settings):
        return
    if choice is not None:
        render_dilution(settings, choice)
        return
    state.init("log_y", True, lambda v: isinstance(v, bool), parse=lambda s: s == "True")
    st.toggle("Log axis", key="log_y")
    state.keep("log_y")
    slot = chart_placeholder()  # the browser loads plotly.js while the models run
    if not progressive.prefetch("Signal dilution", settings, PROBES):
        slot.empty()
        return
    norms = [probe("stream_norms", entry, settings) for entry in settings.models]
    if any(n is None for n in norms):
        slot.empty()
        return
    render_norms(settings, norms, slot)
    names = names_of(settings)
    left, right = st.columns(2)
    with left:
        chart(
            _figure(settings, figures.block_output_chart, norms),
            "dilution_block_output",
            data=dict(zip(names, norms, strict=True)),
        )
    grads = [probe("gradient_norms", entry, settings) for entry in settings.models]
    with right:
        if all(g is not None for g in grads):
            chart(
                _figure(settings, figures.gradient_chart, grads),
                "dilution_gradients",
                data=dict(zip(names, grads, strict=True)),
            )


if __name__ == "__main__":
    main()
