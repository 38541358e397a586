"""Which models the pages can show: the shipped trio plus the ones loaded in this session.

Models are loaded once per process (``st.cache_resource``) on CPU in fp32 and copied onto the
chosen device / dtype on demand (also cached, keyed by model key + device + dtype).
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from attnres import load_model
from attnres.device import DTYPES

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "sample_models"
SHIPPED = {
    "PreNorm": SAMPLE_DIR / "shakespeare-prenorm",
    "Full AttnRes": SAMPLE_DIR / "shakespeare-full",
    "Block AttnRes": SAMPLE_DIR / "shakespeare-block",
}
USER_MODELS = "user_models"  # session-state dict: name -> ModelEntry


@dataclass(frozen=True)
class ModelEntry:
    """A model the user can pick: display name, cache key, where it came from, and (uploads) itself."""

    name: str
    key: str  # identifies the weights: path + modification time, or the upload's content hash
    source: str  # what to show as its origin
    path: str | None = None  # directory to (re)load from; None for uploads
    model: object | None = None  # the loaded CPU fp32 model, for session (user) models


def shipped_entries() -> dict[str, ModelEntry]:
    """The shipped sample models (those whose directory exists)."""
    return {
        name: ModelEntry(name, _path_key(path), str(path.relative_to(REPO_ROOT)), str(path))
        for name, path in SHIPPED.items()
        if path.is_dir()
    }


def choices() -> dict[str, ModelEntry]:
    """Every model a page can offer: shipped first, then this session's loaded ones."""
    return {**shipped_entries(), **st.session_state.get(USER_MODELS, {})}


def add_user_model(entry: ModelEntry) -> None:
    """Makes a loaded model available to every page of this session."""
    st.session_state.setdefault(USER_MODELS, {})[entry.name] = entry


def _path_key(path: Path) -> str:
    try:
        stamp = max(p.stat().st_mtime_ns for p in Path(path).iterdir())
    except (OSError, ValueError):
        stamp = 0
    return f"{Path(path).resolve()}@{stamp}"


def path_key(path: str) -> str:
    """The cache key of a checkpoint on disk (changes when its files change)."""
    return _path_key(Path(path) if Path(path).is_dir() else Path(path).parent) + f":{Path(path).name}"


def upload_key(data: bytes) -> str:
    """The cache key of uploaded bytes."""
    return "upload:" + hashlib.sha256(data).hexdigest()[:16]


def display_name(raw: str, taken) -> str:
    """A short name made of safe characters only, unique among ``taken``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(raw))[:40].strip("._") or "model"
    name, i = stem, 2
    while name in taken:
        name, i = f"{stem}-{i}", i + 1
    return name


@st.cache_resource(show_spinner=False, max_entries=16)
def _load_cpu(path: str, key: str):
    return load_model(path, device="cpu")


@st.cache_resource(show_spinner=False, max_entries=8)
def _placed(_base, key: str, device: str, dtype: str):
    return copy.deepcopy(_base).to(device=device, dtype=DTYPES[dtype]).eval()


def get_model(entry: ModelEntry, device: str = "cpu", dtype: str = "fp32"):
    """The model of ``entry`` on ``device`` in ``dtype`` (cached)."""
    base = entry.model if entry.model is not None else _load_cpu(entry.path, entry.key)
    if device == "cpu" and dtype == "fp32":
        return base
    return _placed(base, entry.key, device, dtype)
