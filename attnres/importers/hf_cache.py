"""Models already in the local Hugging Face cache, listed offline (nothing is downloaded).

The cache is where ``huggingface_hub`` puts it: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``; each model is a
``models--{org}--{name}/snapshots/{commit}`` directory, read by ``huggingface_hub.scan_cache_dir``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import CONFIG_FILE, MAX_CONFIG_BYTES

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


@dataclass(frozen=True)
class CachedModel:
    """One model snapshot in the cache."""

    repo_id: str  # "openai-community/gpt2"
    path: Path  # its snapshot directory (what load_model reads)
    model_type: str  # config.json's model_type ("gpt2", "llama", ...)


def hf_cache_dir() -> Path:
    """The hub cache directory that ``huggingface_hub`` would use, from the environment now."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def cached_models(cache: Path | None = None) -> list[CachedModel]:
    """Every model in the cache with a config.json and weights, sorted by repo id.

    One snapshot each (``main`` if it is there, else the newest); an absent or unreadable cache
    gives ``[]``.
    """
    from huggingface_hub import scan_cache_dir  # noqa: PLC0415 (only the inspector lists the cache)

    cache = hf_cache_dir() if cache is None else Path(cache)
    if not cache.is_dir():
        return []
    try:
        info = scan_cache_dir(cache)
    except Exception:  # noqa: BLE001 (CacheNotFound, a corrupt cache: nothing to offer)
        return []
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revision = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        snapshot = Path(revision.snapshot_path)
        model_type = _model_type(snapshot / CONFIG_FILE)
        if model_type is not None and any((snapshot / name).is_file() for name in WEIGHT_FILES):
            found.append(CachedModel(repo.repo_id, snapshot, model_type))
    return found


def _model_type(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    kind = raw.get("model_type") if isinstance(raw, dict) else None
    return kind if isinstance(kind, str) else None
