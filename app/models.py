"""Which models the pages can show: the shipped trio plus the ones loaded in this session.

Models are loaded once per process (``st.cache_resource``) on CPU in fp32 and copied onto the
chosen device / dtype on demand (also cached, keyed by model key + device + dtype).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from attnres import load_model
from attnres.checkpoint import SNAPSHOTS_DIR
from attnres.device import DTYPES
from attnres.importers.hf_cache import cached_models, hf_cache_dir
from attnres.safety import safe_name

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "sample_models"
SHIPPED = {
    "PreNorm": SAMPLE_DIR / "shakespeare-prenorm",
    "Full AttnRes": SAMPLE_DIR / "shakespeare-full",
    "Block AttnRes": SAMPLE_DIR / "shakespeare-block",
}
USER_MODELS = "user_models"  # session-state dict: name -> ModelEntry
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
GENERIC_STEMS = ("ckpt", "model", "pytorch_model", "upload", "checkpoint")  # say nothing about the run


@dataclass(frozen=True)
class ModelEntry:
    """A model the user can pick: display name, cache key, where it came from, and (uploads) itself."""

    name: str
    key: str  # identifies the weights: path + modification time, or the upload's content hash
    source: str  # what to show as its origin
    path: str | None = None  # directory to (re)load from; None for uploads
    model: object | None = None  # the loaded CPU fp32 model, for session (user) models
    tokenizer_source: str = ""  # where a tokenizer the user picked came from ("" = the checkpoint's own)


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


def with_tokenizer(entry: ModelEntry, tokenizer, source: str) -> ModelEntry:
    """``entry`` reading text with ``tokenizer`` (the weights are shared, not copied); replaces it
    in this session's models under the same name."""
    model = copy.copy(get_model(entry))  # a new Module object over the same parameters
    model.tokenizer = tokenizer
    text = getattr(tokenizer, "json_text", None) or json.dumps(tokenizer.to_dict(), sort_keys=True)
    base_key = entry.key.split("+tokenizer:")[0]
    key = f"{base_key}+tokenizer:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    picked = dataclasses.replace(entry, key=key, model=model, tokenizer_source=source)
    add_user_model(picked)
    return picked


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
    stem = safe_name(raw, also=" ,/")[:60].strip(" ,._") or "model"
    name, i = stem, 2
    while name in taken:
        name, i = f"{stem}-{i}", i + 1
    return name


RULES = {"prenorm": "PreNorm", "full": "Full AttnRes", "block": "Block AttnRes"}


def run_of(path: str) -> str:
    """The run a checkpoint path belongs to: its directory for ``ckpt.pt``-like files, the run above
    ``snapshots/step-N``, the directory itself otherwise (``out-x``, ``out-x/step_1000``)."""
    path = Path(str(path).rstrip("/"))
    if path.suffix not in CHECKPOINT_SUFFIXES:
        above = path.parent.parent.name if path.parent.name == SNAPSHOTS_DIR else ""
        return above or path.name
    if path.stem in GENERIC_STEMS:
        return path.parent.name or path.name
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def model_name(model, run: str, taken) -> str:
    """A name a person can tell apart from the others: run, step, residual rule.

    Args:
        model: the loaded model (its config and import report give the rule and the step).
        run: where it came from (``run_of(path)``, a Hugging Face repo id, an uploaded file's name).
        taken: the names already in use (a ``-2`` is added on a clash).

    Returns:
        E.g. "out-shakespeare-char, step 5000, Block AttnRes S4".
    """
    cfg = model.config
    steps = model.import_report.trained_steps if model.import_report else None
    rule = RULES.get(cfg.residual, cfg.residual)
    if cfg.residual == "block":
        rule += f" S{cfg.attnres_block_size}"
    parts = [run or "model", *([f"step {steps}"] if steps is not None else []), rule]
    return display_name(", ".join(parts), taken)


def hf_cache_listing() -> tuple[str, list]:
    """The Hugging Face cache directory (from the environment now) and the models in it."""
    directory = str(hf_cache_dir())
    return directory, _cached_models(directory)


@st.cache_data(show_spinner=False, ttl=30, max_entries=4)
def _cached_models(directory: str) -> list:
    return cached_models(Path(directory))


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
