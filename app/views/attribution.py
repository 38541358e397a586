"""Attribution & ablation: how much each source matters for the next character (integrated
gradients over the depth gates, via Captum) next to how much weight it gets, and what happens to
the loss and the predictions when one site's routing is changed."""

from __future__ import annotations

import streamlit as st
import torch

import figures
from app import progressive, state
from app.charts import chart, table
from app.common import Settings, encode, header, need_models, plain, probe, sidebar, token_select
from app.models import ModelEntry, get_model
from attnres.lab_limits import available_memory
from probes.attribution import DEFAULT_IG_STEPS, REFINEMENT_STEPS, attribution_estimates, memory_refusal

BUTTONS = {
    "zero_source": "Ablate this source",
    "uniform": "Force uniform",
    "argmax": "Force argmax",
    "plain_sum": "Plain residual",
}
STEPS = [16, 32, 64, 128]
STEPS_HELP = (
    "Gauss-Legendre steps of the integral at most: the page starts with fewer and refines until the "
    "sum is within 1% of exact; the caption shows how far it is."
)
UNCONVERGED = 0.01  # relative completeness error above which the page asks for more steps
HISTORY = "ablations"  # session-state list of (model key, prompt, site, mode, source)
LAST = -1  # position selector value meaning "the prompt's last token"


def site_and_source(attr) -> tuple[int, str]:
    """Selectors of the site (URL ``site``) and one of its sources (URL ``source``)."""
    sites = [int(s) for s in attr.sites]
    state.init("site", sites[-1], state.choice_of(sites), parse=int)
    left, right = st.columns(2)
    left.selectbox("Site", sites, key="site", format_func=lambda l: f"l = {l}")
    labels = list(attr.sources[sites.index(st.session_state["site"])])
    state.init("source", labels[0], state.choice_of(labels))
    right.selectbox("Source (for 'Ablate this source')", labels, key="source")
    state.keep("site", "source")
    return st.session_state["site"], st.session_state["source"]


def position_choice(tokens: tuple[str, ...]) -> int:
    """Selector of the position whose next-token prediction is explained (URL ``position``); the
    default, LAST, follows the prompt's last token when the prompt changes."""
    last = f"the last token ({tokens[-1]!r})"
    chosen = token_select("Explain the prediction after", "position", tokens, LAST, last)
    return len(tokens) - 1 if chosen == LAST else chosen


def refinement_plan(most: int) -> list[int]:
    """The step counts the page tries in turn: the refinement rule's below ``most``, then ``most``."""
    return [n for n in REFINEMENT_STEPS if n < most] + [most]


def best_estimate(key: tuple, plan: list[int]):
    """(the finest stored estimate along the plan or None, the next step count to compute or None)."""
    best = None
    for n_steps in plan:
        estimate = progressive.result((*key, n_steps))
        if estimate is None:
            return best, n_steps
        best = estimate
        if estimate.relative_error()[0] < UNCONVERGED:
            return best, None
    return best, None


def refine(entry: ModelEntry, settings: Settings, key: tuple, position: int, n_steps: int, box) -> None:
    """Computes the next estimate under a progress bar and Stop button (in box), then reruns the page.

    Not started when the internals one gate setting keeps exceed what is free (``memory_refusal``):
    a notice says so instead."""
    model = get_model(entry, settings.device, settings.dtype)
    refusal = memory_refusal(model, position + 1, available_memory(torch.device(settings.device)))
    if refusal is not None:
        box.warning(f"{plain(entry.name)}: {plain(refusal)}")
        return

    def compute(report, device: str):
        on = model if device == settings.device else get_model(entry, device, "fp32")
        estimates = attribution_estimates(
            on, settings.prompt, positions=position, steps=(n_steps,), on_progress=report
        )
        return next(estimates)

    what = f"Integrated gradients for {entry.name}, {n_steps} steps"
    estimate = progressive.run(key, what, compute, settings.device, where=box)
    if estimate is not None:
        progressive.keep((*key, n_steps), estimate)
        st.rerun()


def render_attribution(entry: ModelEntry, settings: Settings):
    """Attribution per source of the chosen site beside its routing weight.

    Returns (the estimate drawn or None, the chosen (site, source) or None, a function that
    computes the next estimate, to call once the rest of the page is drawn, or None). The integral is
    refined step count by step count (``refinement_plan``) until its completeness error is under
    UNCONVERGED: each estimate is drawn as soon as it exists, the next one runs under a progress
    bar with a Stop button.
    """
    state.init("n_steps", DEFAULT_IG_STEPS, state.choice_of(STEPS), parse=int)
    st.select_slider("Integration steps (at most)", STEPS, key="n_steps", help=STEPS_HELP)
    state.keep("n_steps")
    prompt = encode(entry, settings)
    if prompt is None:
        return None, None, None
    position = position_choice(prompt.tokens)
    box = st.container()
    key = ("attribution", entry.key, settings.device, settings.dtype, settings.prompt, position)
    attr, next_steps = best_estimate(key, refinement_plan(st.session_state["n_steps"]))
    if next_steps is not None and progressive.is_stopped(key):
        done = f"at {attr.n_steps} steps" if attr is not None else "before a first estimate"
        progressive.stopped_notice(key, f"Integrated gradients stopped {done}.", where=box)
        next_steps = None
    choice = None
    if attr is not None:
        choice = draw_attribution(entry, settings, attr, prompt, position, refining=next_steps is not None)
    if next_steps is None:
        return attr, choice, None
    return attr, choice, lambda: refine(entry, settings, key, position, next_steps, box)


def draw_attribution(entry: ModelEntry, settings: Settings, attr, prompt, position: int, refining: bool):
    """The site and source selectors, caption, convergence warning and two charts of one estimate;
    returns the chosen (site, source)."""
    site, source = site_and_source(attr)
    st.caption(
        plain(
            f"Explaining the prediction {attr.target_tokens[0]!r} after position {position} "
            f"({prompt.tokens[position]!r}). "
            "Each gate moves the value read along one route from the source's mean over the prompt "
            "(gate 0) to the source itself (gate 1); the orange bars set one route alone to its mean. "
            "Attributions sum to log p(model) − log p(means) "
            f"= {attr.logprob_model[0] - attr.logprob_baseline[0]:+.3f} nats, "
            f"to within {abs(attr.convergence_delta[0]):.1e} ({100 * attr.relative_error()[0]:.2g}% "
            f"completeness error) at {attr.n_steps} steps" + (" (refining)." if refining else ".")
        )
    )
    if attr.relative_error()[0] > UNCONVERGED and not refining:
        advice = "Raise the integration steps." if attr.n_steps < STEPS[-1] else "Read them as approximate."
        st.warning(
            f"The integral has not converged: the attributions miss the total by "
            f"{100 * attr.relative_error()[0]:.1f}%. {advice}"
        )
    left, right = st.columns(2)
    with left:
        routes = probe("route_ablation", entry, settings, site=site, positions=position)
        chart(
            figures.attribution_vs_weight(attr, site, ablation=routes),
            "attribution_site",
            data={"attribution": attr, "route_ablation": routes},
        )
    with right:
        chart(figures.attribution_heatmap(attr), "attribution_all", data=attr)
    return site, source


def _request(entry: ModelEntry, settings: Settings, site: int, source: str, mode: str) -> None:
    request = (entry.key, settings.prompt, site, mode, source if mode == "zero_source" else None)
    history = [r for r in st.session_state.get(HISTORY, []) if r != request]
    st.session_state[HISTORY] = [*history, request][-8:]


def render_ablation(entry: ModelEntry, settings: Settings, site: int, source: str) -> None:
    """Buttons that change one site's routing; the last result and all of this prompt's so far."""
    st.subheader("Ablation")
    for column, (mode, label) in zip(st.columns(len(BUTTONS)), BUTTONS.items(), strict=True):
        column.button(
            label, key=f"ablate_{mode}", on_click=_request, args=(entry, settings, site, source, mode)
        )
    mine = [r for r in st.session_state.get(HISTORY, []) if r[:2] == (entry.key, settings.prompt)]
    if not mine:
        st.caption("Press a button to see how the loss and the predicted next characters change.")
        return
    results = [probe("ablate", entry, settings, site=r[2], mode=r[3], source=r[4]) for r in mine]
    results = [r for r in results if r is not None]
    if not results:
        return
    last = results[-1]
    metrics = st.columns(3)
    metrics[0].metric("Δ loss", f"{last.delta_loss:+.4f}", help="loss after minus loss before, nats")
    metrics[1].metric("Loss after", f"{last.loss_after:.4f}")
    metrics[2].metric("Δ accuracy", f"{last.delta_accuracy:+.3f}")
    left, right = st.columns(2)
    with left:
        st.caption("Predicted next characters at the last position, before and after")
        table(figures.ablation_table(last), "ablation_last", data=last)
    with right:
        chart(figures.ablation_chart(results), "ablation_history", data=results)


def main() -> None:
    header(
        "Attribution & ablation",
        "Routing weight is not importance: a source can get a large weight yet matter little. "
        "Integrated gradients measure each source's effect on the prediction; ablations test it.",
    )
    settings = sidebar(multi=False, default=("Full AttnRes",))
    if not need_models(settings):
        return
    entry = settings.models[0]
    attr, choice, pending = render_attribution(entry, settings)
    if attr is not None:
        render_ablation(entry, settings, *choice)
    if pending is not None:
        pending()


if __name__ == "__main__":
    main()
