"""The inspector's tokenizer section: what a model reads text with and, for a checkpoint saved
without a tokenizer, a way to pick one (a file, an upload, a cached Hugging Face tokenizer, or ids)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.common import plain
from app.models import ModelEntry, hf_cache_listing, with_tokenizer
from attnres import CheckpointError
from attnres.importers.vocab import probably_gpt2, tokenizer_from_file
from attnres.safety import save_upload
from attnres.tokenizer import IdTokenizer

FROM_PATH, FROM_UPLOAD, FROM_CACHE = "a file on this machine", "an uploaded file", "the Hugging Face cache"
NUMBERS, BYTES = "token ids typed as numbers", "UTF-8 bytes as ids"
SOURCES = (FROM_PATH, FROM_UPLOAD, FROM_CACHE, NUMBERS, BYTES)
MISSING = (
    "This checkpoint came without a tokenizer, so no page can read the prompt yet: pick one below "
    "(a tokenizer.json, a nanoGPT meta.pkl, or byte/char ids that read the prompt as numbers or UTF-8 bytes)."
)
PICKED = "_tokenizer_picked"  # session-state: the sentence saying which tokenizer was just picked
TOKENIZER_LIMIT = 100 * 1024 * 1024  # bytes


def describe(tokenizer) -> str:
    """A few words for a tokenizer: its kind and size."""
    if isinstance(tokenizer, IdTokenizer):
        return NUMBERS if tokenizer.mode == "numbers" else BYTES
    kind = {"char": "characters", "hf": "a tokenizer.json"}.get(tokenizer.kind, tokenizer.kind)
    return f"{kind} ({len(tokenizer):,} tokens)"


def tokenizer_section(entry: ModelEntry, model) -> None:
    """Says which tokenizer ``entry`` reads text with; a picker when it has none (or one picked here)."""
    if PICKED in st.session_state:
        st.success(st.session_state.pop(PICKED))
    if model.tokenizer is not None and not entry.tokenizer_source:
        st.caption(f"Tokenizer: {describe(model.tokenizer)}, from the checkpoint.")
        return
    if model.tokenizer is None:
        st.warning(MISSING)
        _picker(entry, model)
        return
    st.caption(f"Tokenizer: {describe(model.tokenizer)}, picked here ({plain(entry.tokenizer_source)}).")
    if model.tokenizer.kind == "ids" and model.tokenizer.mode == "numbers":
        st.caption("Type the prompt as token ids separated by spaces, e.g. 464 3290 318.")
    with st.expander("Change the tokenizer"):
        _picker(entry, model)


def _picker(entry: ModelEntry, model) -> None:
    vocab_size = model.config.vocab_size
    kind = st.radio("Tokenizer from", SOURCES, key="tokenizer_source", horizontal=True)
    if kind == FROM_PATH:
        st.text_input(
            "Path of a tokenizer.json, meta.pkl or meta.json (or a directory holding one)",
            key="tokenizer_path",
        )
    elif kind == FROM_UPLOAD:
        st.file_uploader(
            "A tokenizer.json, meta.pkl or meta.json", type=["json", "pkl"], key="tokenizer_upload"
        )
    elif kind == FROM_CACHE:
        _cache_choice(vocab_size)
    if not st.button("Use this tokenizer", key="tokenizer_apply"):
        return
    try:
        tokenizer, source = _build(kind, vocab_size)
    except CheckpointError as exc:
        st.error(plain(exc))
        return
    if len(tokenizer) > vocab_size:
        st.error(
            f"That tokenizer has {len(tokenizer):,} tokens but this model's vocabulary has {vocab_size:,}."
        )
        return
    with_tokenizer(entry, tokenizer, source)
    st.session_state[PICKED] = (
        f"{entry.name} now reads the prompt with {describe(tokenizer)}; every page can use it."
    )
    st.rerun()


def _cache_choice(vocab_size: int) -> None:
    """Selectbox of the cached models that hold a tokenizer (GPT-2's first when the vocabulary is GPT-2's)."""
    _, models = hf_cache_listing()
    with_tokenizer_files = [m.repo_id for m in models if _has_tokenizer(m.path)]
    if probably_gpt2(vocab_size):
        types = {m.repo_id: m.model_type for m in models}
        with_tokenizer_files.sort(key=lambda repo: types[repo] != "gpt2")
        st.caption("Its vocabulary size is GPT-2's (nanoGPT uses GPT-2's BPE when it has no meta.pkl).")
    if not with_tokenizer_files:
        st.caption("No model in the Hugging Face cache has a tokenizer.json.")
    st.selectbox("Cached model", with_tokenizer_files, key="tokenizer_cached")


def _has_tokenizer(directory: Path) -> bool:
    return (directory / "tokenizer.json").is_file() or (directory / "vocab.json").is_file()


def _build(kind: str, vocab_size: int):
    """(tokenizer, where it came from) for the picker's current choice; CheckpointError if unusable."""
    if kind in (NUMBERS, BYTES):
        return IdTokenizer(vocab_size, "numbers" if kind == NUMBERS else "bytes"), kind
    if kind == FROM_PATH:
        path = st.session_state.get("tokenizer_path", "").strip()
        if not path:
            raise CheckpointError("Type the path of a tokenizer.json, meta.pkl or meta.json first.")
        return tokenizer_from_file(Path(path)), path
    if kind == FROM_CACHE:
        repo = st.session_state.get("tokenizer_cached")
        found = {m.repo_id: m.path for m in hf_cache_listing()[1]}
        if repo not in found:
            raise CheckpointError("Choose a cached model that has a tokenizer first.")
        return tokenizer_from_file(found[repo]), f"{repo} in the Hugging Face cache"
    return _from_upload()


def _from_upload():
    uploaded = st.session_state.get("tokenizer_upload")
    if uploaded is None:
        raise CheckpointError("Upload a tokenizer.json, meta.pkl or meta.json first.")
    temporary: list[str] = []
    try:
        with save_upload(uploaded.getvalue(), uploaded.name, limit=TOKENIZER_LIMIT) as saved:
            temporary = [str(saved.path), str(saved.directory)]
            return tokenizer_from_file(saved.path), f"the uploaded file {uploaded.name!r}"
    except CheckpointError as exc:
        message = str(exc)
        for name in temporary:
            message = message.replace(name, f"the uploaded file {uploaded.name!r}")
        raise CheckpointError(message) from None
