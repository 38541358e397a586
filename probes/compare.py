"""Differences between two results of the same probe (two models, or two prompts).

Arrays are aligned by index: when shapes differ (a different number of layers L, sources K or tokens
T), both are padded with NaN to the larger shape before subtracting, so row l of the difference is
site l in both. Only float arrays are compared; labels are reported, not merged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ._common import ProbeResult


@dataclass(frozen=True)
class Comparison(ProbeResult):
    """b - a for every float array field of two results of one probe."""

    kind: str  # class name of the compared results, e.g. "DepthWeights"
    difference: dict  # field name -> np.ndarray b - a, NaN-padded to the larger shape of the two
    same_shapes: bool  # True when every compared field had the same shape in a and b
    same_labels: bool  # True when the source label tuples agree (or neither result has any)
    notes: tuple[str, ...]  # sentences about alignment (padding, label mismatch)

    def check(self) -> None:
        """Freezes the difference arrays."""
        for value in self.difference.values():
            if not isinstance(value, np.ndarray):
                raise ValueError("every difference must be a numpy array")
            value.flags.writeable = False


def pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Float copy of array padded with NaN (at the end of each axis) to shape."""
    out = np.full(shape, np.nan, dtype=np.float64)
    out[tuple(slice(0, n) for n in array.shape)] = array
    return out


def compare(a: ProbeResult, b: ProbeResult) -> Comparison:
    """Aligns two results of the same probe by index and subtracts them (b - a).

    Args:
        a: the reference result (e.g. the PreNorm model, or the first prompt).
        b: a result of the same probe type.

    Returns:
        Comparison.
    """
    if type(a) is not type(b):
        names = f"{type(a).__name__} and {type(b).__name__}"
        raise ValueError(f"compare needs two results of one probe, got {names}")
    difference, notes, same_shapes = {}, [], True
    for field in fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if not (isinstance(x, np.ndarray) and x.dtype.kind == "f") or x.ndim != y.ndim:
            continue
        if x.shape != y.shape:
            same_shapes = False
            notes.append(f"'{field.name}' has shapes {x.shape} and {y.shape}; aligned by index, NaN-padded")
        shape = tuple(max(m, n) for m, n in zip(x.shape, y.shape, strict=True))
        difference[field.name] = pad_to(y, shape) - pad_to(x, shape)
    same_labels = getattr(a, "sources", None) == getattr(b, "sources", None)
    if not same_labels:
        notes.append("the two results have different source labels; columns are matched by index")
    return Comparison(type(a).__name__, difference, same_shapes, same_labels, tuple(notes))
