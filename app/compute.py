"""Torch-side helpers the app calls (no streamlit here, so they are testable on their own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA (or MPS) out-of-memory error."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_with_oom_fallback(fn: Callable[[str], T], device: str) -> tuple[T, str]:
    """Runs ``fn(device)``; on GPU out-of-memory empties the cache and runs ``fn("cpu")`` instead.

    Returns:
        (result, the device that produced it), so the caller can tell the user about a fallback.
    """
    try:
        return fn(device), device
    except Exception as exc:
        if device == "cpu" or not is_out_of_memory(exc):
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return fn("cpu"), "cpu"
