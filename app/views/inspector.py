"""Checkpoint inspector: load a checkpoint (local path, upload, or a model in the Hugging Face cache;
our format, nanoGPT ckpt.pt, HF GPT-2 directories, nanogpt-attnres-repro), see what it holds and
whether it is healthy, give it a tokenizer if it has none, and use it on every other page."""

from __future__ import annotations

import dataclasses

import streamlit as st

from app import state
from app.charts import table
from app.common import plain
from app.models import (
    ModelEntry,
    add_user_model,
    choices,
    get_model,
    hf_cache_listing,
    model_name,
    path_key,
    run_of,
    upload_key,
)
from app.tokenizer_pick import tokenizer_section
from attnres import CheckpointError, load_model
from attnres.lint import lint_model
from attnres.safety import check_upload_size, save_upload
from probes import depth_parameter_summary

UPLOAD_LIMIT = 200 * 1024 * 1024  # bytes; the server's maxUploadSize
UPLOAD_ERRORS = "_upload_errors"  # session-state: content hash -> why that upload failed
UPLOAD_SEEN = "_upload_seen"  # session-state: content hash of the upload already acted on
REFUSED = "_inspector_refused"  # session-state: why the last load failed, until a model is picked
SEVERITY_BOX = {"error": st.error, "warning": st.warning, "info": st.info}
CACHE_ROWS = 50  # cached models listed at most


def _added(entry: ModelEntry) -> None:
    add_user_model(entry)
    st.session_state["inspect"] = entry.name
    st.session_state.pop(REFUSED, None)
    st.success(f"Loaded {plain(entry.name)}; it is now offered on every page.")


def _refused(message: str) -> None:
    """Remembers a failed load: the page shows why instead of another model's report."""
    st.session_state[REFUSED] = message


def _load_path(path: str, run: str) -> None:
    try:
        model = load_model(path, device="cpu", allow_nonfinite=True)
    except CheckpointError as exc:
        _refused(str(exc))
        return
    name = model_name(model, run, choices())
    _added(ModelEntry(name, path_key(path), path, path=path, model=model))


def load_from_path() -> None:
    """Text field + button: load a checkpoint directory or file from this machine."""
    path = st.text_input(
        "Local path (a checkpoint directory, ckpt.pt, or a Hugging Face model directory)", key="load_path"
    )
    if not st.button("Load from path", key="load_path_button"):
        return
    if not path.strip():
        st.warning("Type a path first.")
        return
    _load_path(path.strip(), run_of(path.strip()))


def load_from_upload() -> None:
    """File uploader: saved under a fixed name in a private temporary directory, then loaded once."""
    uploaded = st.file_uploader(
        "…or upload one checkpoint file (.safetensors, .pt, .pth, .bin)", key="upload"
    )
    if uploaded is None:
        st.session_state.pop(UPLOAD_SEEN, None)
        return
    data = uploaded.getvalue()
    key = upload_key(data)
    if st.session_state.get(UPLOAD_SEEN) == key or any(entry.key == key for entry in choices().values()):
        return
    st.session_state[UPLOAD_SEEN] = key
    errors = st.session_state.setdefault(UPLOAD_ERRORS, {})
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
            _added(
                ModelEntry(model_name(model, run_of(uploaded.name), choices()), key, "upload", model=model)
            )
            return
    _refused(errors[key])


def load_from_hf_cache() -> None:
    """The models already in the Hugging Face cache, each with a Load button (nothing is downloaded)."""
    directory, models = hf_cache_listing()
    with st.expander(f"Models in the Hugging Face cache ({len(models)})", expanded=bool(models)):
        if not models:
            st.caption(f"No models with a config.json and weights in {plain(directory)}.")
        for cached in models[:CACHE_ROWS]:
            left, right = st.columns([4, 1])
            left.text(f"{cached.repo_id} ({cached.model_type})")
            if right.button("Load", key=f"hf_cache_{cached.repo_id}"):
                _load_path(str(cached.path), cached.repo_id)
        if len(models) > CACHE_ROWS:
            st.caption(f"{len(models) - CACHE_ROWS} more; load them by path.")


def render_report(model) -> None:
    """Import report: format, source, and the mapped / ignored / missing / tied keys."""
    report = model.import_report
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
    if all(finding.severity == "info" for finding in findings):  # conventions and notes are no problems
        st.success("No problems found.")
    for finding in findings:
        SEVERITY_BOX[finding.severity](f"{finding.code}: {plain(finding.message)}")


def render_model(entry: ModelEntry) -> None:
    """Everything about one model: tokenizer, config, report, depth parameters, health."""
    model = get_model(entry)
    st.text(f"Source: {entry.source}")
    tokenizer_section(entry, model)
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
    load_from_hf_cache()
    names = list(choices())
    state.init("inspect", names[-1], state.choice_of(names))
    st.selectbox("Inspect", names, key="inspect", on_change=lambda: st.session_state.pop(REFUSED, None))
    state.keep("inspect")
    if REFUSED in st.session_state:
        st.error(plain(st.session_state[REFUSED]))
        st.caption(
            "Nothing was loaded and the models loaded before are unchanged; pick one above to inspect it."
        )
        return
    render_model(choices()[st.session_state["inspect"]])


if __name__ == "__main__":
    main()
