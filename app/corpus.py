"""Corpus mode: the sidebar's Evidence switch, the cached corpus sweep with progress and cancel, and
the corpus views of the Compare, Depth routing, Signal dilution, Retrieval and Logit lens pages.

A finished sweep opens from the on-disk cache (``probes.corpus``; the directory is a sidebar
setting, default ``$ATTNRES_LENS_CACHE`` or ``~/.cache/attnres-lens``); an unmeasured one waits for
the Run button, shows its progress, and stops at Cancel (what was measured is kept, Run resumes).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

import figures.corpus as FC
from app import state
from app.charts import chart, table
from app.common import Settings, plain, probe
from app.models import get_model
from probes.corpus import (
    CorpusError,
    SweepCache,
    SweepSettings,
    corpus_diff,
    corpus_sinks,
    corpus_sweep,
    default_cache_dir,
    is_cached,
    load_sequences,
    prompt_vs_corpus,
)

EVIDENCE = {"prompt": "This prompt", "corpus": "Corpus"}
VIEWS = {"mean": "Mean", "seq_std": "Spread across sequences", "token_std": "Spread across tokens",
         "ci_half": "95% CI half width"}  # fmt: skip
RUNNING = "_corpus_running"  # session flag: a sweep was asked for and has not finished or been cancelled


@dataclass(frozen=True)
class CorpusChoice:
    """The sidebar's corpus settings."""

    source: str
    max_seqs: int
    gradients: bool
    cache_dir: str

    def settings(self) -> SweepSettings:
        """The sweep settings they mean."""
        return SweepSettings(max_seqs=self.max_seqs, gradients=self.gradients)


def corpus_mode() -> CorpusChoice | None:
    """The Evidence switch in the sidebar (URL ``evidence``); the corpus settings when it is on."""
    with st.sidebar:
        state.init("evidence", "prompt", state.choice_of(list(EVIDENCE)))
        st.segmented_control("Evidence", list(EVIDENCE), key="evidence", format_func=EVIDENCE.get)
        state.keep("evidence")
        if st.session_state["evidence"] != "corpus":
            return None
        state.init("corpus", "heldout", lambda v: isinstance(v, str))
        st.text_input("Corpus: heldout, or a .txt / .jsonl file or folder on this machine", key="corpus")
        state.init("max_seqs", 128, lambda v: isinstance(v, int) and 2 <= v <= 100_000, parse=int)
        st.number_input("Sequences (256 tokens each)", 2, 100_000, key="max_seqs", step=64)
        state.init("corpus_gradients", False, lambda v: isinstance(v, bool), parse=lambda s: s == "True")
        st.toggle("With gradients (Fig. 5c; about 3x slower)", key="corpus_gradients")
        state.keep("corpus", "max_seqs", "corpus_gradients")
        state.init("corpus_cache_dir", str(default_cache_dir()), lambda v: isinstance(v, str) and bool(v))
        st.text_input("Cache directory", key="corpus_cache_dir")
        st.session_state[state.KEEP + "corpus_cache_dir"] = st.session_state["corpus_cache_dir"]  # not in URL
    return CorpusChoice(
        st.session_state["corpus"].strip() or "heldout",
        int(st.session_state["max_seqs"]),
        bool(st.session_state["corpus_gradients"]),
        st.session_state["corpus_cache_dir"],
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _sequences(_model, model_key: str, source: str, seq_len: int, max_seqs: int):
    return load_sequences(_model, source, seq_len, max_seqs)


def _prepared(settings: Settings, choice: CorpusChoice):
    """(name, model, sequences) per model, or None after a warning."""
    out = []
    for entry in settings.models:
        model = get_model(entry, settings.device, settings.dtype)
        seq_len = min(choice.settings().seq_len, model.config.block_size)
        try:
            out.append(
                (entry.name, model, _sequences(model, entry.key, choice.source, seq_len, choice.max_seqs))
            )
        except CorpusError as error:
            st.warning(f"{plain(entry.name)}: {plain(error)}")
            return None
    return out


def _run(missing, cache: SweepCache, sweep: SweepSettings) -> bool:
    """Sweeps the unmeasured models with a progress bar; False when cancelled."""
    if st.button("Cancel the corpus sweep", key="corpus_cancel"):
        st.session_state[RUNNING] = False
        st.info("Cancelled. What was measured is saved; Run resumes from there.")
        return False
    bar = st.progress(0.0, text="Starting the corpus sweep…")
    for i, (name, model, seqs) in enumerate(missing):

        def step(done: int, total: int, name=name, i=i) -> None:
            bar.progress((i + done / total) / len(missing), text=f"{name}: {done} of {total} sequences")

        corpus_sweep(model, seqs, sweep, cache=cache, progress=step)
    bar.empty()
    st.session_state[RUNNING] = False
    return True


def corpus_results(settings: Settings, choice: CorpusChoice):
    """(each chosen model's CorpusStats, whether any was swept in this run), or None while any is missing."""
    prepared = _prepared(settings, choice)
    if prepared is None:
        return None
    cache, sweep = SweepCache(choice.cache_dir), choice.settings()
    missing = [p for p in prepared if not is_cached(p[1], p[2], sweep, cache)]
    if missing:
        names = ", ".join(plain(name) for name, _, _ in missing)
        seqs = missing[0][2]
        st.info(
            f"Not measured yet on this corpus: {names} "
            f"({len(seqs)} sequences, {seqs.n_tokens:,} tokens each)."
        )
        if st.button("Run the corpus sweep", key="corpus_run", type="primary"):
            st.session_state[RUNNING] = True
        if not st.session_state.get(RUNNING) or not _run(missing, cache, sweep):
            return None
    try:
        return [corpus_sweep(model, seqs, sweep, cache=cache) for _, model, seqs in prepared], bool(missing)
    except (CorpusError, OSError) as error:
        st.error(f"The corpus sweep could not be read or run: {plain(error)}")
        return None


def evidence_caption(stats_list, swept_now: bool) -> None:
    """What the page rests on, and where it came from."""
    st.caption(
        f"Corpus: {plain(stats_list[0].corpus)} · {FC.evidence_note(stats_list)} per model · "
        f"{'measured now' if swept_now else 'opened from the cache'} · "
        "bands and ± are 95% t-intervals over sequences."
    )


def _loaded(settings: Settings, choice: CorpusChoice):
    """(names, stats per model, name -> stats) under the evidence caption, or None while any is missing."""
    found = corpus_results(settings, choice)
    if found is None:
        return None
    stats_list, swept_now = found
    evidence_caption(stats_list, swept_now)
    names = [e.name for e in settings.models]
    return names, stats_list, dict(zip(names, stats_list, strict=True))


def _selectors() -> tuple[str, str]:
    """View (mean or a spread) and panel of the corpus heatmaps (URL ``corpus_view``, ``corpus_panel``)."""
    left, right = st.columns(2)
    state.init("corpus_view", "mean", state.choice_of(list(VIEWS)))
    left.segmented_control("Cells show", list(VIEWS), key="corpus_view", format_func=VIEWS.get)
    state.init("corpus_panel", "all", state.choice_of(list(FC.PANELS)))
    right.segmented_control("Sites", list(FC.PANELS), key="corpus_panel", format_func=FC.PANELS.get)
    state.keep("corpus_view", "corpus_panel")
    return st.session_state["corpus_view"] or "mean", st.session_state["corpus_panel"] or "all"


def _prompt_vs_corpus(settings: Settings, stats_list) -> None:
    """Where the sidebar prompt's routing is unusual for each AttnRes model."""
    st.subheader("This prompt vs the corpus")
    shown = False
    for entry, stats in zip(settings.models, stats_list, strict=True):
        if stats.residual == "prenorm":
            continue
        dw = probe("depth_weights", entry, settings)
        if dw is None:
            continue
        pvc = prompt_vs_corpus(dw, stats)
        chart(FC.prompt_vs_corpus_heatmap(pvc, entry.name), f"corpus_prompt_{entry.name}", data=pvc)
        shown = True
    if not shown:
        st.caption("PreNorm has no routing to compare; pick an AttnRes model.")


def _diff(settings: Settings, stats_list) -> None:
    """The first two chosen models of the same depth: where their corpus routing differs."""
    pairs = [(i, j) for i in range(len(stats_list)) for j in range(i + 1, len(stats_list))
             if stats_list[i].n_sites == stats_list[j].n_sites]  # fmt: skip
    if not pairs:
        return
    names = [e.name for e in settings.models]
    st.subheader("Model diff")
    i, j = st.selectbox(
        "Models", pairs, format_func=lambda p: f"{names[p[1]]} − {names[p[0]]}", key="corpus_pair"
    )
    diff = corpus_diff(stats_list[i], stats_list[j])
    for note in diff.notes:
        st.caption(plain(note))
    left, right = st.columns([3, 2])
    with left:
        chart(FC.corpus_diff_heatmap(diff, [names[i], names[j]]), "corpus_diff", data=diff)
    with right:
        table(FC.corpus_diff_table(diff), "corpus_diff_largest", data=diff)


def render_compare(settings: Settings, choice: CorpusChoice) -> None:
    """The Compare page over a corpus: heatmaps of corpus means or spreads, bands, drill-down, diff."""
    loaded = _loaded(settings, choice)
    if loaded is None:
        return
    names, stats_list, data = loaded
    for column, name, stats in zip(st.columns(len(stats_list)), names, stats_list, strict=True):
        loss = stats.loss
        column.metric(f"{name}: loss on the corpus", f"{loss.seq_mean[0]:.3f} ± {loss.ci_half[0]:.3f} nats")
    view, panel = _selectors()
    chart(FC.corpus_heatmaps(stats_list, names, view, panel), "corpus_depth_weights", data=data)
    left, right = st.columns(2)
    with left:
        fig = FC.band_chart(
            stats_list, names, "input_rms", "Stream magnitude RMS(h_l)", "site l", "RMS", True
        )
        chart(fig, "corpus_norm_growth", data=data)
    with right:
        chart(FC.collapse_chart(stats_list, names), "corpus_collapse", data=data)
    chart(FC.alpha_rms_chart(stats_list, names), "corpus_alpha_rms", data=data)
    _prompt_vs_corpus(settings, stats_list)
    _diff(settings, stats_list)


def render_depth(settings: Settings, choice: CorpusChoice) -> None:
    """The Depth routing page over a corpus: mean and spread heatmaps, sinks with their spread."""
    loaded = _loaded(settings, choice)
    if loaded is None:
        return
    names, stats_list, _ = loaded
    stats, name = stats_list[0], names[0]
    left, right = st.columns(2)
    with left:
        chart(FC.corpus_heatmaps([stats], [name], "mean"), "corpus_depth_mean", data=stats)
    with right:
        chart(FC.corpus_heatmaps([stats], [name], "seq_std"), "corpus_depth_spread", data=stats)
    st.subheader("Depth-wise sinks over the corpus")
    sinks = corpus_sinks(stats)
    st.caption(
        f"Sources with mean weight ≥ {sinks.min_mean:g} whose spread over tokens and across sequences is "
        f"≤ {sinks.max_std:g}: they draw weight whatever the input. Rests on {sinks.n_sequences:,} "
        f"sequences and {sinks.n_tokens:,} tokens."
    )
    table(FC.corpus_sinks_table(sinks), "corpus_sinks", data=sinks)
    left, right = st.columns(2)
    with left:
        fig = FC.band_chart([stats], [name], "entropy", "Routing entropy per site", "site l", "nats")
        chart(fig, "corpus_entropy", data=stats)
    with right:
        chart(FC.collapse_chart([stats], [name]), "corpus_depth_collapse", data=stats)


def render_dilution(settings: Settings, choice: CorpusChoice) -> None:
    """The Signal dilution page over a corpus: every magnitude with its 95% band."""
    loaded = _loaded(settings, choice)
    if loaded is None:
        return
    names, stats_list, data = loaded
    specs = [
        ("input_rms", "Stream magnitude RMS(h_l)", "site l", "RMS(h_l)", True),
        ("update_ratio", "Update ratio ||v_l|| / ||h_l||", "layer l", "ratio", True),
        ("update_share", "Share of h_{l+1} held by layer l's update", "layer l", "share", False),
        ("block_output_rms", "Fig. 5b — output magnitude per block", "Transformer block", "RMS", False),
    ]
    if all(s.block_grad_norm is not None for s in stats_list):
        specs.append(("block_grad_norm", "Fig. 5c — gradient magnitude per block", "Transformer block",
                      "||d loss / d θ|| (95% CI over batches)", True))  # fmt: skip
    for row in range(0, len(specs), 2):
        for column, spec in zip(st.columns(2), specs[row : row + 2], strict=False):
            field, title, x_title, y_title, log_y = spec
            with column:
                fig = FC.band_chart(stats_list, names, field, title, x_title, y_title, log_y)
                chart(fig, f"corpus_{field}", data=data)
    if len(specs) == 4:
        st.caption("Fig. 5c over the corpus needs gradients: switch on 'With gradients' in the sidebar.")


def render_retrieval(settings: Settings, choice: CorpusChoice) -> None:
    """The Retrieval page over a corpus: corpus-mean routing of the AttnRes models, strongest sources."""
    loaded = _loaded(settings, choice)
    if loaded is None:
        return
    names, stats_list, data = loaded
    routed = [(n, s) for n, s in zip(names, stats_list, strict=True) if s.residual != "prenorm"]
    if not routed:
        st.caption("PreNorm has no routing weights over the corpus: each source enters with weight 1.")
        return
    routed_names, routed_stats = [n for n, _ in routed], [s for _, s in routed]
    chart(FC.corpus_heatmaps(routed_stats, routed_names, "mean"), "corpus_retrieval_mixing", data=data)
    st.subheader("Strongest sources per site over the corpus")
    table(FC.corpus_top_sources_table(routed_stats, routed_names), "corpus_retrieval_summary", data=data)


def render_lens(settings: Settings, choice: CorpusChoice) -> None:
    """The Logit lens page over a corpus: KL of each site's lens to the final output, loss by position."""
    loaded = _loaded(settings, choice)
    if loaded is None:
        return
    names, stats_list, data = loaded
    left, right = st.columns(2)
    with left:
        fig = FC.band_chart(
            stats_list, names, "lens_kl", "Logit lens: KL to the final output", "site l", "nats"
        )
        chart(fig, "corpus_lens_kl", data=data)
    with right:
        fig = FC.band_chart(
            stats_list, names, "loss_by_position", "Next-token loss by position", "position", "nats"
        )
        chart(fig, "corpus_loss_by_position", data=data)
