"""Sweep results on disk: keyed by (model fingerprint, corpus digest, settings), npz + JSON.

A finished sweep is ``KEY.npz`` (its accumulators as plain arrays, read with ``allow_pickle=False``)
beside ``KEY.json`` (what it was measured on). An unfinished one is ``KEY.partial-RofW.npz`` (rank R
of W), saved every few seconds and when the sweep stops, so the next run resumes from it. The
directory is ``$ATTNRES_LENS_CACHE`` when set, else ``~/.cache/attnres-lens``; a damaged file is
treated as absent (and measured again).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

ENV = "ATTNRES_LENS_CACHE"
VERSION = 1  # bump when the accumulators' layout or meaning changes


def default_cache_dir() -> Path:
    """``$ATTNRES_LENS_CACHE`` or ``~/.cache/attnres-lens``."""
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "attnres-lens").expanduser()


def model_fingerprint(model) -> str:
    """sha256 of the model's config and every weight's name, dtype, shape and bytes."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def sweep_key(fingerprint: str, corpus_digest: str, settings: dict) -> str:
    """The cache key of one sweep (hex)."""
    text = json.dumps(
        {"v": VERSION, "model": fingerprint, "corpus": corpus_digest, **settings}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


class SweepCache:
    """One cache directory."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()

    def _npz(self, key: str, part: str = "") -> Path:
        return self.directory / f"{key}{part}.npz"

    def load(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """(arrays, meta) of a finished sweep, or None."""
        try:
            meta = json.loads((self.directory / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        arrays = _read_npz(self._npz(key))
        return (arrays, meta) if arrays is not None and isinstance(meta, dict) else None

    def save(self, key: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Stores a finished sweep (the npz first, so a JSON always has its arrays)."""
        _write_atomic(self._npz(key), lambda tmp: _savez(tmp, arrays))
        text = json.dumps(meta, sort_keys=True, indent=1)
        _write_atomic(
            self.directory / f"{key}.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8")
        )

    def load_partial(self, key: str, rank: int = 0, world: int = 1) -> dict[str, np.ndarray] | None:
        """The saved accumulators of an unfinished sweep (this rank's shard), or None."""
        return _read_npz(self._npz(key, f".partial-{rank}of{world}"))

    def save_partial(self, key: str, arrays: dict[str, np.ndarray], rank: int = 0, world: int = 1) -> None:
        """Stores an unfinished sweep's accumulators."""
        _write_atomic(self._npz(key, f".partial-{rank}of{world}"), lambda tmp: _savez(tmp, arrays))

    def remove_partial(self, key: str, rank: int = 0, world: int = 1) -> None:
        """Deletes an unfinished sweep's file (after it finished)."""
        self._npz(key, f".partial-{rank}of{world}").unlink(missing_ok=True)
