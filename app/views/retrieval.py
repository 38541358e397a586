"""Retrieval: which earlier layers each layer reads, as a layer graph (arcs above a threshold) and
as the depth-mixing matrix (Fig. 9): AttnRes alpha next to the baseline's implied mixing."""

from __future__ import annotations

import streamlit as st

import figures
from app import state
from app.charts import chart, table
from app.common import header, names_of, need_models, probe, sidebar
from app.corpus import corpus_mode, render_retrieval


def threshold_choice() -> float:
    """Slider: the smallest strength drawn as an arc (in the URL as ``threshold``)."""
    state.init("threshold", 0.15, state.in_range(0.0, 1.0), parse=float)
    st.slider("Threshold (weight or share drawn as an arc)", 0.0, 1.0, step=0.01, key="threshold")
    state.keep("threshold")
    return float(st.session_state["threshold"])


def main() -> None:
    header(
        "Retrieval",
        "Arcs join each layer to the earlier sources it reads with at least the threshold's strength: "
        "AttnRes's softmax weight alpha, or for PreNorm each source's share of the summed stream.",
    )
    settings = sidebar(multi=True, default=("PreNorm", "Full AttnRes"))
    choice = corpus_mode()
    if not need_models(settings):
        return
    if choice is not None:  # the corpus first, then this prompt as the drill-down
        render_retrieval(settings, choice)
        st.subheader("This prompt")
    threshold = threshold_choice()
    names = names_of(settings)
    retrievals = [probe("depth_retrieval", entry, settings) for entry in settings.models]
    if any(r is None for r in retrievals):
        return
    for i, (column, retrieval, name) in enumerate(
        zip(st.columns(len(names)), retrievals, names, strict=True)
    ):
        with column:
            chart(figures.retrieval_graph(retrieval, threshold, name), f"retrieval_graph_{i}", data=retrieval)
            chart(figures.mixing_matrix(retrieval, name), f"retrieval_mixing_{i}", data=retrieval)
    st.subheader("Strongest sources per site")
    table(
        figures.retrieval_summary(retrievals, names),
        "retrieval_summary",
        data=dict(zip(names, retrievals, strict=True)),
    )


if __name__ == "__main__":
    main()
