"""Signal dilution: residual-stream norms per layer (log axis), update-to-stream ratios, and the
paper's Fig. 5b (output magnitude per block) and Fig. 5c (gradient magnitude per block)."""

from __future__ import annotations

import streamlit as st

import figures
from app import state
from app.charts import chart
from app.common import header, names_of, need_models, probe, sidebar
from app.corpus import corpus_mode, render_dilution


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
    names = names_of(settings)
    norms = [probe("stream_norms", entry, settings) for entry in settings.models]
    if any(n is None for n in norms):
        return
    data = dict(zip(names, norms, strict=True))
    state.init("log_y", True, lambda v: isinstance(v, bool), parse=lambda s: s == "True")
    st.toggle("Log axis", key="log_y")
    state.keep("log_y")
    chart(
        figures.norm_growth_chart(norms, names, log_y=st.session_state["log_y"]), "dilution_norms", data=data
    )
    left, right = st.columns(2)
    with left:
        chart(figures.update_ratio_chart(norms, names), "dilution_update_ratio", data=data)
    with right:
        chart(figures.update_share_chart(norms, names), "dilution_update_share", data=data)
    left, right = st.columns(2)
    with left:
        chart(figures.block_output_chart(norms, names), "dilution_block_output", data=data)
    grads = [probe("gradient_norms", entry, settings) for entry in settings.models]
    with right:
        if all(g is not None for g in grads):
            chart(
                figures.gradient_chart(grads, names),
                "dilution_gradients",
                data=dict(zip(names, grads, strict=True)),
            )


if __name__ == "__main__":
    main()
