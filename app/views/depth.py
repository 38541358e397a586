"""Depth routing: one model's depth-attention weights in depth (Fig. 8), one site token by token,
how spread out each site's weights are, and the sources that draw weight whatever the input."""

from __future__ import annotations

import streamlit as st

import figures
import probes
from app import state
from app.charts import chart, table
from app.common import Settings, encode, header, need_models, probe, sidebar
from app.corpus import corpus_mode
from app.corpus import render_depth as render_corpus


def render_panels(dw, name: str) -> None:
    """Pre-attention and pre-MLP panels side by side on one colour scale (the paper's Fig. 8)."""
    zmax = figures.depth_zmax(dw, panels=("attn", "mlp"))  # site 1's fixed weight 1 is left out
    left, right = st.columns(2)
    with left:
        chart(figures.depth_heatmap(dw, name, panel="attn", zmax=zmax), "depth_attn", data=dw.view("attn"))
    with right:
        chart(figures.depth_heatmap(dw, name, panel="mlp", zmax=zmax), "depth_mlp", data=dw.view("mlp"))


def site_choice(dw) -> int:
    """Selector of the consuming site (in the URL as ``site``)."""
    sites = [int(s) for s in dw.sites]
    kinds = dict(zip(sites, dw.kinds, strict=True))
    state.init("site", sites[len(sites) // 2], state.choice_of(sites), parse=int)
    st.selectbox(
        "Site (the layer whose input is mixed)",
        sites,
        key="site",
        format_func=lambda l: f"l = {l} ({kinds[l]})",
    )
    state.keep("site")
    return st.session_state["site"]


def render_site(dw, prompt: probes.Prompt) -> None:
    """Token × source weights at one site."""
    site = site_choice(dw)
    chart(figures.token_source_heatmap(dw, site, prompt.tokens), "depth_token_source", data=dw)


def render_spread_and_sinks(dw, name: str) -> None:
    """Entropy per site, and the depth-wise attention sinks (paper §6.2)."""
    left, right = st.columns([3, 2])
    with left:
        chart(figures.entropy_chart([dw], [name]), "depth_entropy", data=dw)
    with right:
        st.subheader("Depth-wise sinks")
        sinks = probes.depth_sinks(dw)
        st.caption(
            f"Sources with mean weight ≥ {sinks.min_mean:g} and token spread ≤ {sinks.max_std:g}: "
            "they draw weight whatever the input."
        )
        table(figures.sinks_table(sinks), "depth_sinks", data=sinks)


def main() -> None:
    header(
        "Depth routing",
        "Where one model's layers read from: each row is a consuming layer, each column an earlier "
        "source, the colour its softmax weight averaged over the prompt's tokens.",
    )
    settings: Settings = sidebar(multi=False)
    choice = corpus_mode()
    if not need_models(settings):
        return
    if choice is not None:
        render_corpus(settings, choice)
        return
    entry = settings.models[0]
    prompt = encode(entry, settings)
    dw = probe("depth_weights", entry, settings) if prompt is not None else None
    if dw is None:
        return
    if dw.residual == "prenorm":
        st.info(
            "PreNorm has no routing: every source enters with weight 1. Pick an AttnRes model to see choices."
        )
    render_panels(dw, entry.name)
    render_site(dw, prompt)
    render_spread_and_sinks(dw, entry.name)


if __name__ == "__main__":
    main()
