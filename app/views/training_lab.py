"""Training lab: train a PreNorm model and an AttnRes twin side by side, live (same seed, same
batches), and watch the depth weights leave uniform while PreNorm's stream grows with depth."""

from __future__ import annotations

import streamlit as st

import figures
import probes
from app import state
from app.charts import chart
from app.common import header, plain
from app.models import REPO_ROOT, ModelEntry, add_user_model, choices, display_name, path_key
from attnres.config import BLOCK_NAMES
from attnres.device import available_devices, select_device
from attnres.lab import PRESETS, PROBE_TEXT, TWINS, LabError, TwinRun
from attnres.safety import safe_name

RUN = "lab_run"  # session-state: this browser session's TwinRun (one at a time)
REFUSED = "lab_refused"  # session-state: why the last Train press was refused
PROBED = "lab_probed"  # session-state: (run id, step, depth weights, stream norms) last shown
RUNS_DIR = REPO_ROOT / "runs"  # saved twins go to runs/<folder name>/
RULES = {"Block AttnRes": "block", "Full AttnRes": "full"}
BLOCKS = {name: family for family, name in BLOCK_NAMES.items()}  # label -> config.BLOCK_FAMILIES key


def folder_name(raw: str) -> str | None:
    """A folder name made safe for runs/: letters, digits, '.', '_' and '-' only, no leading dot."""
    name = safe_name(raw.strip())[:60].lstrip(".")
    return name or None


def controls() -> dict:
    """Preset, rule, S, block and device selectors (kept across pages and in the URL)."""
    presets, devices = list(PRESETS), available_devices()
    cols = st.columns(5)
    state.init("lab_preset", presets[0], state.choice_of(presets))
    cols[0].selectbox("Preset", presets, key="lab_preset")
    state.init("lab_rule", "Block AttnRes", state.choice_of(list(RULES)))
    cols[1].selectbox("AttnRes twin", list(RULES), key="lab_rule")
    sublayers = 2 * PRESETS[st.session_state["lab_preset"]].n_layer
    state.init("lab_s", 2, lambda v: isinstance(v, int) and 1 <= v <= sublayers, parse=int)
    block = RULES[st.session_state["lab_rule"]] == "block"
    cols[2].number_input("S (sublayers per block)", 1, sublayers, key="lab_s", disabled=not block)
    state.init("lab_block", list(BLOCKS)[0], state.choice_of(list(BLOCKS)))
    cols[3].selectbox("Block", list(BLOCKS), key="lab_block", help="Both twins use this block.")
    state.init("lab_device", select_device().type, state.choice_of(devices))
    cols[4].selectbox("Device", devices, key="lab_device")
    state.keep("lab_preset", "lab_rule", "lab_s", "lab_block", "lab_device")
    return {
        "preset": PRESETS[st.session_state["lab_preset"]],
        "rule": RULES[st.session_state["lab_rule"]],
        "attnres_block_size": int(st.session_state["lab_s"]) if block else None,
        "block": BLOCKS[st.session_state["lab_block"]],
        "device": st.session_state["lab_device"],
    }


def _train(choice: dict) -> None:
    """Button callback: a new run replaces this session's previous one (or says why it cannot)."""
    st.session_state.pop(REFUSED, None)
    try:
        st.session_state[RUN] = TwinRun(**choice)
    except LabError as exc:
        st.session_state[REFUSED] = str(exc)
    st.session_state.pop(PROBED, None)


def start_stop(choice: dict, run: TwinRun | None) -> None:
    """Train / Stop buttons (callbacks, so both are drawn knowing whether a run is under way)."""
    busy = run is not None and run.running
    left, right = st.columns([1, 5])
    left.button("Train", key="lab_train", type="primary", disabled=busy, on_click=_train, args=(choice,))
    right.button("Stop", key="lab_stop", disabled=not busy, on_click=run.stop if busy else None)
    if st.session_state.get(REFUSED):
        st.error(plain(st.session_state[REFUSED]))


def probed(run: TwinRun):
    """(step, depth weights, stream norms) of the twins' latest copies, measured once per probe step."""
    step, copies = run.probe_models()
    kept = st.session_state.get(PROBED)
    if kept is None or kept[:2] != (id(run), step):
        dw = probes.depth_weights(copies["attnres"], PROBE_TEXT)
        norms = [probes.stream_norms(copies[twin], PROBE_TEXT) for twin in TWINS]
        kept = st.session_state[PROBED] = (id(run), step, dw, norms)
    return kept[1:]


def render_progress(run: TwinRun):
    """Progress bar, status sentence and the latest numbers; returns the state shown."""
    now = run.state()
    st.progress(
        min(1.0, now.step / now.max_steps),
        text=f"step {now.step:,} of {now.max_steps:,} · {now.tokens:,} tokens per twin · "
        f"{now.tokens_per_s:,.0f} tokens/s per twin · {now.elapsed_s:.0f} s",
    )
    box = {"error": st.error, "running": st.caption}.get(now.status, st.info)
    box(plain(now.message))
    cols = st.columns(3)
    for col, twin in zip(cols, TWINS, strict=False):
        loss = now.losses[twin][-1] if now.losses[twin] else None
        col.metric(f"{now.names[twin]} train loss", "–" if loss is None else f"{loss:.3f}")
    seen = "not yet" if now.visible_at is None else f"step {now.visible_at[0]} ({now.visible_at[1]:.1f} s)"
    cols[2].metric("max |α − 1/K| (AttnRes twin)", f"{now.departure:.3f}", help=f"above 0.05 since: {seen}")
    return now


def render_charts(run: TwinRun, now) -> None:
    """Loss curves, the AttnRes twin's depth heatmap and both twins' stream RMS per site."""
    logs = {now.names[twin]: now.log_rows(twin) for twin in TWINS}
    chart(figures.loss_curves(logs), "lab_loss", data=logs)
    step, dw, norms = probed(run)
    chart(figures.depth_heatmap(dw, f"{now.names['attnres']}, step {step}"), "lab_depth", data=dw)
    names = [now.names[twin] for twin in TWINS]
    chart(figures.norm_growth_chart(norms, names), "lab_norms", data=dict(zip(names, norms, strict=True)))
    st.caption(f"Depth weights and stream RMS on a fixed prompt: {plain(PROBE_TEXT[:60])}…")


@st.fragment(run_every=1.0)
def live_view() -> None:
    """Redrawn every second while the run trains; a full rerun once it has ended."""
    run = st.session_state.get(RUN)
    if run is None:
        return
    render_charts(run, render_progress(run))
    if not run.running:
        st.rerun()


def render_save(run: TwinRun) -> None:
    """Save one twin into runs/<name>/ and offer it on every page."""
    st.subheader("Save a twin")
    cols = st.columns([2, 2, 1])
    names = run.state().names
    which = cols[0].selectbox("Twin", TWINS, format_func=names.get, key="lab_save_which")
    raw = cols[1].text_input("Folder name inside runs/", key="lab_save_name", placeholder="my-block-twin")
    if not cols[2].button("Save", key="lab_save"):
        return
    name = folder_name(raw)
    if name is None:
        st.warning("Type a folder name first (letters, digits, '.', '_' or '-').")
        return
    target = RUNS_DIR / name
    if target.exists():
        st.warning(f"runs/{plain(name)} already exists; choose another name.")
        return
    path = run.save(which, target)
    entry_name = display_name(f"lab-{name}", choices())
    add_user_model(ModelEntry(entry_name, path_key(str(path)), f"runs/{name}", path=str(path)))
    st.success(
        f"Saved {plain(names[which])} to runs/{plain(name)}; it is offered on every page as {entry_name}."
    )


def main() -> None:
    header(
        "Training lab",
        "Train a PreNorm model and an AttnRes twin side by side from the same seed on the same "
        "batches. The AttnRes depth weights start uniform (zero-initialised queries) and sharpen "
        "within a few dozen steps; PreNorm's stream grows with depth (signal dilution).",
    )
    choice = controls()
    run = st.session_state.get(RUN)
    start_stop(choice, run)
    run = st.session_state.get(RUN)
    if run is None:
        st.info("Pick a preset and press Train; the charts update every second while it trains.")
        return
    for note in run.notes:
        st.info(plain(note))
    if run.running:
        live_view()
    else:
        render_charts(run, render_progress(run))
    render_save(run)


if __name__ == "__main__":
    main()
