"""Compare (home): two or three models on one prompt, side by side on shared axes and colour scales."""

from __future__ import annotations

from functools import partial

import streamlit as st

from app import progressive, state
from app.charts import chart, table
from app.common import (
    COMPARE_PROBES,
    Settings,
    chart_placeholder,
    encode,
    header,
    loss,
    names_of,
    need_models,
    plain,
    probe,
    shared_figure,
    sidebar,
    token_select,
    view_key,
)
from app.corpus import corpus_mode, render_compare
from figures.depth import depth_heatmaps
from figures.norms import norm_growth_chart
from figures.retrieval import retrieval_summary

PANELS = {"all": "All sites", "attn": "Pre-attention", "mlp": "Pre-MLP", "readout": "Readout"}
MEAN = -1  # token selector value meaning "mean over tokens"


def depth_figure(settings: Settings, dws: list, panel: str, token: int | None):
    """The depth-weight heatmaps of the chosen models (built once for every session)."""
    build = partial(depth_heatmaps, dws, names_of(settings), panel, token=token)
    return shared_figure(("compare_depth", *view_key(settings, panel, token)), build)


def norms_figure(settings: Settings, norms: list):
    """Norm growth of the chosen models on one log axis (built once for every session)."""
    return shared_figure(
        ("compare_norms", *view_key(settings)), partial(norm_growth_chart, norms, names_of(settings))
    )


def retrieval_rows(settings: Settings, retrievals: list) -> list[dict]:
    """The retrieval summary's rows (built once for every session)."""
    build = partial(retrieval_summary, retrievals, names_of(settings))
    return shared_figure(("compare_retrieval", *view_key(settings)), build)


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


def render_depth(settings: Settings, token: int | None) -> None:
    """Depth-weight heatmaps of every model on one colour scale."""
    dws = [probe("depth_weights", entry, settings) for entry in settings.models]
    if any(dw is None for dw in dws):
        return
    panel = st.session_state["panel"] or "all"
    names = names_of(settings)
    chart(
        depth_figure(settings, dws, panel, token),
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
                norms_figure(settings, norms),
                "compare_norm_growth",
                data=dict(zip(names, norms, strict=True)),
            )
    with right:
        if all(r is not None for r in retrievals):
            st.subheader("Strongest sources per site")
            table(
                retrieval_rows(settings, retrievals),
                "compare_retrieval",
                data=dict(zip(names, retrievals, strict=True)),
            )


def render_prompt_view(settings: Settings) -> None:
    """The page on the sidebar prompt. A blank chart slot goes out first, so the browser loads
    plotly.js while the models run; slow models run under a progress bar with a Stop button."""
    top = st.container()
    depth_slot = chart_placeholder()
    with top:
        prompts = [encode(entry, settings) for entry in settings.models]
        if any(p is None for p in prompts) or not progressive.prefetch("Compare", settings, COMPARE_PROBES):
            depth_slot.empty()
            return
        st.caption(f"Prompt: {len(prompts[0].ids)} tokens.")
        render_losses(settings)
        token = token_choice(min(prompts, key=lambda p: len(p.ids)).tokens)
    with depth_slot.container():
        render_depth(settings, token)
    render_norms_and_retrieval(settings)
    if len({p.ids for p in prompts}) > 1:
        st.info(plain("The models tokenize the prompt differently; token positions follow the shortest."))


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
    render_prompt_view(settings)


if __name__ == "__main__":
    main()
