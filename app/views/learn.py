"""Learn: signal dilution, for a newcomer. Plain words, a toy simulator, then the real models."""

from __future__ import annotations

import streamlit as st

import figures
import probes
from app import state
from app.charts import chart
from app.common import header, names_of, need_models, probe, sidebar
from app.models import shipped_entries
from attnres.card import recorded_losses

INTRO = """
A language model like GPT is a stack of **layers**. Each layer reads a running summary of the text so
far, called the **residual stream**, computes something, and writes its result back. In the usual
design (*PreNorm residuals*) "writing back" means **adding**: the stream after layer 10 is the
embedding of the input plus the outputs of layers 1 to 10, each with weight 1.

Adding everything has a side effect. The stream gets **longer** (its size, or *norm*, grows) with
every layer, while a single layer's output stays about the same size. So each new layer's
contribution is a **smaller and smaller share** of what the next layer reads. Deep layers have to
shout to be heard, and the paper finds that the earliest layers then receive disproportionately large
gradients. The paper calls this **signal dilution**.

**Attention Residuals** (Kimi Team, 2026) replace the fixed sum with a choice. Before each layer, a
small softmax over depth decides how much of each earlier output (and of the embedding) to take;
the weights are positive and add up to 1, so the stream cannot keep growing. Each layer has one
learned *query* vector for this, started at zero, so training begins from an equal-weight average.
*Block AttnRes* does the same over summaries of groups of layers, which saves memory.
"""

PAPER = """
**What the paper reports** (arXiv 2603.15031), at 194M to 528M activated parameters: validation loss
baseline / Block / Full of 1.931 / 1.909 / 1.899 (194M), 1.766 / 1.746 / 1.737 (436M) and
1.719 / 1.693 / 1.692 (528M); Block AttnRes matches the baseline's loss with 1.25× less compute.
On a 48B-parameter model (3B active) trained on 1.4T tokens, GPQA-Diamond rose from 36.9 to 44.4 and
HumanEval from 59.1 to 62.2, for under 4% extra training cost and under 2% extra inference latency.
"""

HONEST = """
**What our small models show.** The shipped models have about 0.92M parameters and only 16 sublayers,
hundreds of times smaller than the paper's. The AttnRes twins fit the training plays slightly better
but do **not** generalise better to the held-out plays (table below: one seed each, differences within
what another seed could change); small public replications are mixed too. At 16 sublayers the
dilution is mild once training ends (the numbers under the charts above are measured on the prompt
you chose); it is far clearer early in training (Training dynamics: the 250-step snapshot). Use these
models to look at the mechanism, not as evidence for or against the paper's gains.
"""


def render_simulator() -> None:
    """The toy stream: PreNorm sum vs depth softmax, each layer's share of what the next reads."""
    st.subheader("Try it: a toy residual stream")
    st.caption(
        "No model here: each layer writes an update of a chosen size in its own direction. "
        "Left, the size of the stream; right, the newest layer's share of what the next layer reads."
    )
    cols = st.columns(4)
    state.init("depth", 32, state.in_range(2, 128), parse=int)
    cols[0].slider("Layers", 2, 128, key="depth")
    state.init("update_norm", 1.0, state.in_range(0.1, 5.0), parse=float)
    cols[1].slider("Update size", 0.1, 5.0, step=0.1, key="update_norm")
    state.init("growth", 1.0, state.in_range(0.8, 1.2), parse=float)
    cols[2].slider("Growth of updates per layer", 0.8, 1.2, step=0.01, key="growth")
    state.init("recency", 1.0, state.in_range(0.0, 3.0), parse=float)
    cols[3].slider("Softmax preference for recent layers", 0.0, 3.0, step=0.1, key="recency")
    state.keep("depth", "update_norm", "growth", "recency")
    args = {k: st.session_state[k] for k in ("depth", "update_norm", "growth")}
    sims = [
        figures.simulate_dilution(**args, rule="prenorm", seed=0),
        figures.simulate_dilution(**args, rule="attnres", seed=0, recency=st.session_state["recency"]),
    ]
    chart(figures.dilution_chart(sims), "learn_simulator", data=sims)


def shipped_losses() -> list[dict]:
    """Parameters and final train / validation loss of the shipped models, as their cards record them."""
    rows = []
    for name, entry in shipped_entries().items():
        recorded = recorded_losses(entry.path)
        rows.append(
            {
                "model": name,
                "parameters": recorded.parameters,
                "train loss": recorded.train_loss,
                "validation loss": recorded.validation_loss,
            }
        )
    return rows


def render_real(settings) -> None:
    """The same effect measured on the chosen real models."""
    st.subheader("The same effect in real models")
    norms = [probe("stream_norms", entry, settings) for entry in settings.models]
    if any(n is None for n in norms):
        return
    names = names_of(settings)
    data = dict(zip(names, norms, strict=True))
    left, right = st.columns(2)
    with left:
        chart(figures.norm_growth_chart(norms, names), "learn_norms", data=data)
    with right:
        chart(figures.update_share_chart(norms, names), "learn_share", data=data)
    st.markdown(measured_dilution(norms, names))


def measured_dilution(norms, names) -> str:
    """One measured sentence per model: stream growth h_2 -> h_L and the deeper half's own share."""
    lines = []
    for result, name in zip(norms, names, strict=True):
        L = len(result.update_share_mean)
        if L < 4:
            continue
        growth, share = probes.stream_dilution(result)
        lines.append(
            f"- **{name}**: RMS(h_L) / RMS(h_2) = {growth:.2f}; the deeper half of its {L} layers each hold "
            f"{share:.3f} of the next layer's input on average (an equal share of {L} would be {1 / L:.3f})."
        )
    return "Measured on this prompt:\n" + "\n".join(lines) if lines else ""


def main() -> None:
    header(
        "Learn: signal dilution",
        "Why adding every layer's output dilutes it, and what Attention Residuals change.",
    )
    settings = sidebar(multi=True)
    st.markdown(INTRO)
    render_simulator()
    if need_models(settings):
        render_real(settings)
    st.markdown(PAPER)
    st.markdown(HONEST)
    st.dataframe(shipped_losses(), hide_index=True)


if __name__ == "__main__":
    main()
