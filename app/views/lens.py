"""Logit lens: what each site's residual stream would predict if the model stopped there."""

from __future__ import annotations

import streamlit as st

import figures
import probes
from app import progressive, state
from app.charts import chart, table
from app.common import MAX_PROMPT_CHARS, encode, header, need_models, plain, sidebar
from app.corpus import corpus_mode, render_lens
from app.models import get_model
from probes.lens import first_positions, merge_lenses, read_positions

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
    choice = corpus_mode()
    if not need_models(settings):
        return
    if choice is not None:  # the corpus first, then this prompt as the drill-down
        render_lens(settings, choice)
        st.subheader("This prompt")
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
    pending = [render_model(i, entry, settings) for i, entry in enumerate(settings.models)]
    # one under the other: each heatmap is one row per site; then the rest of the first lens not yet
    # complete (each completion reruns the page, which starts the next)
    for rest in pending:
        if rest is not None:
            rest()
            return


def _compute(entry, settings, positions):
    """The computation progressive.run calls: the lens of the sites at ``positions`` (None: all)."""

    def compute(report, device: str):
        model = get_model(entry, device, settings.dtype if device != "cpu" else "fp32")
        return probes.logit_lens(model, settings.prompt, positions=positions, sources=False, on_chunk=report)

    return compute


def _stage(key, what: str, compute, settings, stopped: str):
    """A stored lens, or one computed under a progress bar and kept; None while stopped or failed."""
    lens = progressive.result(key)
    if lens is not None:
        return lens
    if progressive.is_stopped(key):
        progressive.stopped_notice(key, stopped)
        return None
    lens = progressive.run(key, what, compute, settings.device)
    if lens is not None:
        progressive.keep(key, lens)
    return lens


def read_lens(entry, settings, n_tokens: int, position: int):
    """The lens of the sites the page draws (not the sources), cached per model and prompt, computed
    chunk by chunk under a progress bar with a Stop button.

    Returns (the lens to draw or None, a function that computes the rest or None). Where reading
    every position takes long (``probes.lens.first_positions``), the first lens holds the table's
    position and the last positions only, drawn at once; the function then reads the others, merges
    and reruns the page.
    """
    key = ("logit_lens", entry.key, settings.device, settings.dtype, settings.prompt)
    stopped, what = f"The logit lens of {entry.name} was stopped.", f"Logit lens of {entry.name}"
    first = (
        None if progressive.result(key) is not None else first_positions(get_model(entry), n_tokens, position)
    )
    if first is None:  # complete, or every position at once
        return _stage(key, what, _compute(entry, settings, None), settings, stopped), None
    lens = _stage((*key, tuple(first)), f"{what}, {len(first)} positions", _compute(entry, settings, first),
                  settings, stopped)  # fmt: skip
    if lens is None:
        return None, None
    box = st.container()
    if progressive.is_stopped(key):
        progressive.stopped_notice(key, f"The logit lens of {entry.name} was stopped after its first "
                                   f"{len(first)} positions.", where=box)  # fmt: skip
        return lens, None
    rest = [t for t in range(n_tokens) if t not in set(first)]

    def pending() -> None:
        more = progressive.run(key, f"{what}, the other {len(rest)} positions",
                               _compute(entry, settings, rest), settings.device, where=box)  # fmt: skip
        if more is not None:
            progressive.keep(key, merge_lenses(lens, more))
            st.rerun()

    return lens, pending


def render_model(i: int, entry, settings):
    """One model's heatmap over the prompt, then its table of top predictions at one position;
    returns the function that computes the rest of its lens, or None."""
    prompt = encode(entry, settings)
    if prompt is None:
        return None
    position = max(st.session_state["position"], -len(prompt.ids))
    lens, pending = read_lens(entry, settings, len(prompt.ids), position)
    if lens is None:
        return None
    tokenizer = get_model(entry).tokenizer
    fig = figures.logit_lens_heatmap(lens, st.session_state["metric"], entry.name, prompt.tokens, tokenizer)
    if pending is not None:
        st.caption(f"{plain(entry.name)}: the first {int(read_positions(lens)[0].sum())} positions; the "
                   "others follow.")  # fmt: skip
    chart(fig, f"lens_heatmap_{i}", data=lens)
    st.caption(f"{plain(entry.name)}: top predictions at position {len(prompt.ids) + position}")
    table(figures.logit_lens_table(lens, position, tokenizer), f"lens_table_{i}")
    return pending


if __name__ == "__main__":
    main()
