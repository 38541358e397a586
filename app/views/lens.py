"""Logit lens: what each site's residual stream would predict if the model stopped there."""

from __future__ import annotations

import streamlit as st

import figures
import probes
from app import progressive, state
from app.charts import chart, table
from app.common import MAX_PROMPT_CHARS, encode, header, need_models, plain, sidebar
from app.models import get_model

METRICS = {
    "target_rank": "Rank of the true next character",
    "entropy": "Entropy",
    "kl": "KL to the final output",
}


def main() -> None:
    header(
        "Logit lens",
        "Each site's stream is passed through the final norm and the output head: rows are sites, "
        "columns prompt positions; the table lists the top predictions at one position.",
    )
    settings = sidebar(multi=True)
    if not need_models(settings):
        return
    state.init("metric", "target_rank", state.choice_of(list(METRICS)))
    st.selectbox("Metric", list(METRICS), key="metric", format_func=METRICS.get)
    state.init("position", -1, lambda v: isinstance(v, int) and v < 0, parse=int)
    st.number_input(
        "Position for the table (negative counts from the end)",
        min_value=-MAX_PROMPT_CHARS,
        max_value=-1,
        step=1,
        key="position",
    )
    state.keep("metric", "position")
    for i, entry in enumerate(settings.models):  # one under the other: each heatmap is one row per site
        render_model(i, entry, settings)


def read_lens(entry, settings):
    """The lens of the sites the page draws (not the sources), cached per model and prompt; computed
    chunk by chunk under a progress bar with a Stop button."""
    key = ("logit_lens", entry.key, settings.device, settings.dtype, settings.prompt)
    lens = progressive.result(key)
    if lens is not None:
        return lens
    if progressive.is_stopped(key):
        progressive.stopped_notice(key, f"The logit lens of {entry.name} was stopped.")
        return None

    def compute(report, device: str):
        model = get_model(entry, device, settings.dtype if device != "cpu" else "fp32")
        return probes.logit_lens(model, settings.prompt, sources=False, on_chunk=report)

    lens = progressive.run(key, f"Logit lens of {entry.name}", compute, settings.device)
    if lens is not None:
        progressive.keep(key, lens)
    return lens


def render_model(i: int, entry, settings) -> None:
    """One model's heatmap over the prompt, then its table of top predictions at one position."""
    prompt = encode(entry, settings)
    lens = read_lens(entry, settings) if prompt is not None else None
    if lens is None:
        return
    tokenizer = get_model(entry).tokenizer
    fig = figures.logit_lens_heatmap(lens, st.session_state["metric"], entry.name, prompt.tokens, tokenizer)
    chart(fig, f"lens_heatmap_{i}", data=lens)
    position = max(st.session_state["position"], -len(prompt.ids))
    st.caption(f"{plain(entry.name)}: top predictions at position {len(prompt.ids) + position}")
    table(figures.logit_lens_table(lens, position, tokenizer), f"lens_table_{i}")


if __name__ == "__main__":
    main()
