"""Checkpoint inspector: load a checkpoint (local path or upload; our format, nanoGPT ckpt.pt, HF
GPT-2 directories), see what it holds and whether it is healthy, and use it on every other page."""

from __future__ import annotations

import dataclasses

import streamlit as st

from app import state
from app.charts import table
from app.common import plain
from app.compute import depth_parameter_summary
from app.models import ModelEntry, add_user_model, choices, display_name, get_model, path_key, upload_key
from attnres import CheckpointError, load_model
from attnres.lint import lint_model
from attnres.safety import check_upload_size, save_upload

UPLOAD_LIMIT = 200 * 1024 * 1024  # bytes; the server's maxUploadSize
UPLOAD_ERRORS = "_upload_errors"  # session-state: content hash -> why that upload failed
SEVERITY_BOX = {"error": st.error, "warning": st.warning, "info": st.info}


def _added(entry: ModelEntry) -> None:
    add_user_model(entry)
    st.session_state["inspect"] = entry.name
    st.success(f"Loaded {entry.name}; it is now offered on every page.")


def load_from_path() -> None:
    """Text field + button: load a checkpoint directory or file from this machine."""
    path = st.text_input(
        "Local path (a checkpoint directory, ckpt.pt, or an HF GPT-2 directory)", key="load_path"
    )
    if not st.button("Load from path", key="load_path_button"):
        return
    if not path.strip():
        st.warning("Type a path first.")
        return
    try:
        model = load_model(path.strip(), device="cpu", allow_nonfinite=True)
    except CheckpointError as exc:
        st.error(plain(exc))
        return
    name = display_name(path.strip().rstrip("/").split("/")[-1], choices())
    _added(ModelEntry(name, path_key(path.strip()), path.strip(), path=path.strip(), model=model))


def load_from_upload() -> None:
    """File uploader: saved under a fixed name in a private temporary directory, then loaded."""
    uploaded = st.file_uploader(
        "…or upload one checkpoint file (.safetensors, .pt, .pth, .bin)", key="upload"
    )
    if uploaded is None:
        return
    data = uploaded.getvalue()
    key = upload_key(data)
    errors = st.session_state.setdefault(UPLOAD_ERRORS, {})
    if any(entry.key == key for entry in choices().values()):
        return
    if key not in errors:
        temporary: list[str] = []  # server-side names, never shown: the user sees their file's name
        try:
            check_upload_size(uploaded.size, UPLOAD_LIMIT, name="the uploaded file")
            with save_upload(data, uploaded.name, limit=UPLOAD_LIMIT) as saved:
                temporary = [str(saved.path), str(saved.directory)]
                model = load_model(saved.path, device="cpu", allow_nonfinite=True)
        except CheckpointError as exc:
            message = str(exc)
            for name in temporary:
                message = message.replace(name, f"the uploaded file {uploaded.name!r}")
            errors[key] = message
        else:
            _added(ModelEntry(display_name(uploaded.name, choices()), key, "upload", model=model))
            return
    st.error(plain(errors[key]))


def render_report(model) -> None:
    """Import report: format, source, and the mapped / ignored / missing / tied keys."""
    report = getattr(model, "import_report", None)
    if report is None:
        st.caption("No import report.")
        return
    cols = st.columns(3)
    cols[0].metric("Format", report.format)
    cols[1].metric("Parameters", f"{model.num_params():,}")
    cols[2].metric(
        "Trained steps", "unknown" if report.trained_steps is None else f"{report.trained_steps:,}"
    )
    st.text(report.architecture)
    with st.expander(f"Keys: {report.key_counts()}"):
        table([{"in the file": a, "ours": b} for a, b in report.mapped], "inspector_mapped")
        table([{"ignored": k} for k in report.ignored], "inspector_ignored")
        table([{"missing": k} for k in report.missing], "inspector_missing")
        table([{"tied": k} for k in report.tied], "inspector_tied")
    for note in report.notes:
        st.info(plain(note))


def render_health(model) -> None:
    """Health lint findings, most serious first."""
    st.subheader("Health lint")
    with st.spinner("Checking the model…"):
        findings = lint_model(model)
    if not findings:
        st.success("No problems found.")
    for finding in findings:
        SEVERITY_BOX[finding.severity](f"{finding.code}: {plain(finding.message)}")


def render_model(entry: ModelEntry) -> None:
    """Everything about one model: config, report, depth parameters, health."""
    model = get_model(entry)
    st.text(f"Source: {entry.source}")
    render_report(model)
    with st.expander("Config"):
        st.json(dataclasses.asdict(model.config))
    rows, cosine = depth_parameter_summary(model)
    st.subheader("Depth parameters")
    if rows:
        table(rows, "inspector_queries")
        st.caption("Cosine between the sites' queries (similar queries read depth alike).")
        table(cosine, "inspector_cosine")
    else:
        st.caption("PreNorm models have no depth-attention parameters.")
    render_health(model)


def main() -> None:
    st.title("Checkpoint inspector")
    st.caption("Load a checkpoint to inspect it; loaded models are added to the model choices of every page.")
    load_from_path()
    load_from_upload()
    names = list(choices())
    state.init("inspect", names[-1], state.choice_of(names))
    st.selectbox("Inspect", names, key="inspect")
    state.keep("inspect")
    render_model(choices()[st.session_state["inspect"]])


if __name__ == "__main__":
    main()
