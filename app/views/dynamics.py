"""Training dynamics: the shipped runs at their snapshots (steps 0, 250, 1,500 and the final model):
depth weights and stream norms at the chosen step, and the loss curves of train_log.csv."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import figures
from app import state
from app.charts import chart
from app.common import Settings, header, need_models, sidebar, snapshot_series
from app.models import ModelEntry, get_model
from attnres.checkpoint import SNAPSHOTS_DIR, run_snapshots


def snapshots_of(entry: ModelEntry) -> tuple[tuple[int, str], ...]:
    """(step, path) of every snapshot of a run, the final model last; empty without snapshots/."""
    if entry.path is None or not (Path(entry.path) / SNAPSHOTS_DIR).is_dir():
        return ()
    final_step = getattr(get_model(entry).import_report, "trained_steps", None)
    return run_snapshots(entry.path, final_step)


def step_choice(steps: list[int]) -> int:
    """Slider over the snapshot steps (in the URL as ``step``)."""
    state.init("step", steps[-1], state.choice_of(steps), parse=int)
    st.select_slider("Training step", steps, key="step")
    state.keep("step")
    return st.session_state["step"]


def render_step(runs: dict, settings: Settings, step: int) -> None:
    """Depth weights and stream norms of every run at one step, on shared scales."""
    names, dws, norms = [], [], []
    for name, (entry, snaps) in runs.items():
        steps = [s for s, _ in snaps]
        if step not in steps:
            continue
        index = steps.index(step)
        series_dw = snapshot_series(entry, snaps, "depth_weights", settings)
        series_norms = snapshot_series(entry, snaps, "stream_norms", settings)
        if series_dw is None or series_norms is None:
            return
        names.append(name)
        dws.append(series_dw.results[index])
        norms.append(series_norms.results[index])
    if not names:
        st.info("No chosen run has a snapshot at this step.")
        return
    chart(
        figures.depth_heatmaps(dws, names, "all"), "dynamics_depth", data=dict(zip(names, dws, strict=True))
    )
    chart(
        figures.norm_growth_chart(norms, names), "dynamics_norms", data=dict(zip(names, norms, strict=True))
    )


def render_losses(runs: dict, step: int) -> None:
    """Train and validation loss curves, with the chosen step marked."""
    logs = {}
    for name, (entry, _) in runs.items():
        log = Path(entry.path) / "train_log.csv"
        if log.is_file():
            logs[name] = figures.read_train_log(log)
    if not logs:
        return
    fig = figures.loss_curves(logs)
    fig.add_vline(x=step, line_dash="dot", line_color="#888")
    chart(fig, "dynamics_loss", data=logs)


def main() -> None:
    header(
        "Training dynamics",
        "The same runs during training: depth weights start uniform (zero-initialised queries) and "
        "sharpen; the loss curves come from each run's train_log.csv.",
    )
    settings = sidebar(multi=True)
    if not need_models(settings):
        return
    runs = {entry.name: (entry, snapshots_of(entry)) for entry in settings.models}
    runs = {name: run for name, run in runs.items() if run[1]}
    if not runs:
        st.warning("None of the chosen models has training snapshots (a snapshots/step-* folder).")
        return
    steps = sorted({step for _, snaps in runs.values() for step, _ in snaps})
    step = step_choice(steps)
    render_step(runs, settings, step)
    render_losses(runs, step)
    with st.expander("Every snapshot at once"):
        series = [snapshot_series(entry, snaps, "depth_weights", settings) for entry, snaps in runs.values()]
        if all(s is not None for s in series):
            chart(figures.snapshot_depth_heatmaps(series, list(runs)), "dynamics_all_steps")


if __name__ == "__main__":
    main()
