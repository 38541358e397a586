"""Compare (home): two or three models on one prompt, side by side on shared axes and colour scales."""

from __future__ import annotations

import streamlit as st

from app import state
from app.charts import chart, table
from app.common import (
    Settings,
    encode,
    header,
    loss,
    names_of,
    need_models,
    plain,
    probe,
    sidebar,
    token_select,
)
from app.corpus import corpus_mode, render_compare
from figures.depth import depth_heatmaps
from figures.norms import norm_growth_chart
from figures.retrieval import retrieval_summary

PANELS = {"all": "All sites", "attn": "Pre-attention", "mlp": "Pre-MLP", "readout": "Readout"}
MEAN = -1  # token selector value meaning "mean over tokens"


def render_losses(settings: Settings) -> None:
    """One metric per model: mean next-character loss on the prompt."""
    columns = st.columns(len(settings.models))
    for column, entry in zip(columns, settings.models, strict=True):
        value = loss(entry, settings)
        column.metric(f"{entry.name}: loss on the prompt", "—" if value is None else f"{value:.3f} nats")


def token_choice(tokens: tuple[str, ...]) -> int | None:
    """Selector: the mean over tokens (default) or one token position; in the URL as ``token``."""
    token = token_select("Token", "token", tokens, MEAN, "mean over tokens")
    state.init("panel", "all", state.choice_of(list(PANELS)))
    st.segmented_control("Sites", list(PANELS), key="panel", format_func=PANELS.get)
    state.keep("panel")
    return None if token == MEAN else token


def render_depth(settings: Settings, tokens: tuple[str, ...]) -> None:
    """Depth-weight heatmaps of every model on one colour scale."""
    token = token_choice(tokens)
    dws = [probe("depth_weights", entry, settings) for entry in settings.models]
    if any(dw is None for dw in dws):
        return
    panel = st.session_state["panel"] or "all"
    names = names_of(settings)
    chart(
        depth_heatmaps(dws, names, panel, token=token),
        "compare_depth_weights",
        data=dict(zip(names, dws, strict=True)),
    )


def render_norms_and_retrieval(settings: Settings) -> None:
    """Norm growth (log axis) and the retrieval summary, all models on shared axes."""
    names = names_of(settings)
    norms = [probe("stream_norms", entry, settings) for entry in settings.models]
    retrievals = [probe("depth_retrieval", entry, settings) for entry in settings.models]
    left, right = st.columns([2, 3])  # the table's six columns need the wider half
    with left:
        if all(n is not None for n in norms):
            chart(
                norm_growth_chart(norms, names),
                "compare_norm_growth",
                data=dict(zip(names, norms, strict=True)),
            )
    with right:
        if all(r is not None for r in retrievals):
            st.subheader("Strongest sources per site")
            table(
                retrieval_summary(retrievals, names),
                "compare_retrieval",
                data=dict(zip(names, retrievals, strict=True)),
            )


def main() -> None:
    header(
        "Compare models",
        "The same prompt through two or three models: where each layer reads from (depth weights), "
        "how the residual stream grows, and which earlier layers are retrieved.",
    )
    settings = sidebar(multi=True)
    choice = corpus_mode()
    if not need_models(settings):
        return
    if choice is not None:
        render_compare(settings, choice)
        return
    prompts = [encode(entry, settings) for entry in settings.models]
    if any(p is None for p in prompts):
        return
    st.caption(f"Prompt: {len(prompts[0].ids)} tokens.")
    render_losses(settings)
    shortest = min(prompts, key=lambda p: len(p.ids))
    render_depth(settings, shortest.tokens)
    render_norms_and_retrieval(settings)
    if len({p.ids for p in prompts}) > 1:
        st.info(plain("The models tokenize the prompt differently; token positions follow the shortest."))


if __name__ == "__main__":
    main()
