"""Training dynamics: one probe run over a sequence of snapshots of the same training run."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ._common import ProbeResult
from .compare import pad_to


@dataclass(frozen=True)
class SnapshotSeries(ProbeResult):
    """Results of one probe at N snapshots, in the order given."""

    names: tuple[str, ...]  # N snapshot names (directory names, or "snapshot{i}" for models)
    steps: np.ndarray  # [N] training step of each snapshot (its index when unknown)
    results: tuple[ProbeResult, ...]  # N results of the same probe

    def check(self) -> None:
        """Checks that names, steps and results agree in length and type."""
        n = len(self.names)
        if len(self.steps) != n or len(self.results) != n:
            raise ValueError(f"{n} names, {len(self.steps)} steps and {len(self.results)} results")
        if len({type(r) for r in self.results}) > 1:
            raise ValueError("a snapshot series holds results of one probe only")

    def stack(self, field: str) -> np.ndarray:
        """[N, ...] one array field across snapshots, NaN-padded by index where shapes differ."""
        arrays = [np.asarray(getattr(r, field), dtype=np.float64) for r in self.results]
        shape = tuple(max(a.shape[i] for a in arrays) for i in range(arrays[0].ndim))
        return np.stack([pad_to(a, shape) for a in arrays])

    def field_names(self) -> tuple[str, ...]:
        """Names of the fields ``stack`` can take (numeric arrays and numbers)."""
        first = self.results[0]
        return tuple(
            f.name
            for f in fields(first)
            if isinstance(getattr(first, f.name), (np.ndarray, int, float))
            and not isinstance(getattr(first, f.name), bool)
        )


def _step_of(path: Path) -> int | None:
    """The training step a checkpoint's config.json records ('step' or 'training.step'), if any."""
    config = (path if path.is_dir() else path.parent) / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    step = data.get("step", (data.get("training") or {}).get("step"))
    return int(step) if isinstance(step, (int, float)) else None


def over_snapshots(
    snapshots: Sequence,
    probe: Callable,
    inputs,
    steps: Sequence[int] | None = None,
    device="cpu",
    **probe_kwargs,
) -> SnapshotSeries:
    """Runs probe(model, inputs, **probe_kwargs) on every snapshot of a run.

    Args:
        snapshots: checkpoint paths (loaded one at a time with ``attnres.load_model``) or models.
        probe: any probe function of this package, e.g. ``depth_weights``.
        inputs: text, Prompt(s) or token ids; text is encoded by each snapshot's own tokenizer.
        steps: the training step of each snapshot; default from config.json, else the index.
        device: where loaded snapshots are placed.
        **probe_kwargs: passed on to the probe.

    Returns:
        SnapshotSeries.
    """
    from attnres import load_model

    names, found, results = [], [], []
    for i, snapshot in enumerate(snapshots):
        if isinstance(snapshot, (str, Path)):
            path = Path(snapshot)
            model, name, step = load_model(path, device=device), path.name, _step_of(path)
        else:
            model, name, step = snapshot, f"snapshot{i}", None
        results.append(probe(model, inputs, **probe_kwargs))
        names.append(name)
        found.append(i if step is None else step)
    steps = list(steps) if steps is not None else found
    return SnapshotSeries(tuple(names), np.asarray(steps, dtype=np.int64), tuple(results))
