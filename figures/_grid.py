"""Site × source grids: row labels, one column set per model, and probe matrices laid out on it.

Probe arrays over sources are indexed by each site's own label tuple (padded with NaN). For PreNorm
and Full AttnRes the tuples are prefixes of the readout's, so the grid *is* the probe array. Block
AttnRes sites read ("emb", "B1", .., "B{n-1}"[, "partial"]): the grid's columns are the union of the
labels (emb, B1..BN, then partial) and each value goes to its label's column.
"""

from __future__ import annotations

import numpy as np

from .style import safe_label


def site_label(site: int, kind: str) -> str:
    """'L3 (attn)', 'L4 (mlp)', 'L17 (readout)'."""
    return f"L{int(site)} ({kind})"


def site_labels(sites, kinds) -> list[str]:
    """Row labels of every site."""
    return [site_label(s, k) for s, k in zip(sites, kinds, strict=True)]


def _order(label: str) -> tuple[int, int]:
    if label == "emb":
        return (0, 0)
    if label == "partial":
        return (2, 0)
    digits = "".join(ch for ch in label if ch.isdigit())
    return (1, int(digits) if digits else 0)


def union_columns(sources) -> list[str]:
    """Every source label of a model, in depth order: emb, L1.. or B1.., then partial."""
    seen = {label for labels in sources for label in labels}
    return sorted(seen, key=_order)


def on_grid(matrix: np.ndarray, sources, columns: list[str]) -> np.ndarray:
    """[S, Kmax] probe matrix -> [S, len(columns)] with each value under its label (NaN elsewhere)."""
    matrix = np.asarray(matrix)
    grid = np.full((len(sources), len(columns)), np.nan, dtype=np.float64)
    index = {label: j for j, label in enumerate(columns)}
    for row, labels in enumerate(sources):
        for k, label in enumerate(labels):
            grid[row, index[label]] = matrix[row, k]
    return grid


def hover_sources(sources, columns: list[str]) -> list[list[str]]:
    """[S][C] escaped label of the source in each cell ('' where the site has no such source)."""
    return [[safe_label(c) if c in set(labels) else "" for c in columns] for labels in sources]
