"""A training run's resume state: what ``--checkpoint-every``, ``--resume`` and ``--stop-after`` keep.

The state lives under ``OUT/resume/``: ``state.pt`` (written by rank 0: the step, the wall time so
far, the model's and the optimizer's state dicts) and ``data-rank{r}.pt`` (each rank's data-order
generator). Everything in them is tensors and numbers, read back with ``torch.load(weights_only=True)``.
A process that resumes from it reaches the same weights, log and snapshots as one that never stopped,
bit for bit: the model, the optimizer and the batches all go on from where they were.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import BatchSampler
from .model import Model

RESUME_DIR = "resume"


@dataclass(frozen=True)
class ResumePlan:
    """At which steps this process keeps the resume state, and at which it ends early.

    Attributes:
        every: steps between saves (``--checkpoint-every``; 0: never).
        stop_after: steps this process runs before it saves and ends (``--stop-after``; 0: to the end).
        first: the step this process starts at (0, or the step it resumed from).
        last: the run's final step (``--steps``); a run that reaches it does not stop early.
    """

    every: int
    stop_after: int
    first: int
    last: int

    def stops_at(self, step: int) -> bool:
        """Whether this process ends before taking ``step`` (saving first)."""
        return bool(self.stop_after) and step == self.first + self.stop_after and step < self.last

    def saves_at(self, step: int) -> bool:
        """Whether the resume state is written before taking ``step``."""
        periodic = bool(self.every) and step > self.first and step % self.every == 0
        return periodic or self.stops_at(step)


def save_resume(
    out: Path, step: int, model: Model, optimizer, sampler: BatchSampler, rank: int, wall: float
) -> None:
    """Writes everything a later process needs to go on as if uninterrupted.

    Args:
        out: the run's output directory (the state goes to ``out/resume/``).
        step: the next step to take.
        model: the model being trained (its state dict is saved by rank 0).
        optimizer: its optimizer (state dict saved by rank 0).
        sampler: this rank's batch sampler (its generator is the data order).
        rank: this process's rank (each rank saves its own data order).
        wall: seconds of training so far, so the final wall time counts every process.
    """
    folder = out / RESUME_DIR
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": sampler.generator.get_state()}, folder / f"data-rank{rank}.pt")
    if rank == 0:
        state = {"step": step, "wall": wall, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
        torch.save(state, folder / "state.pt.tmp")
        os.replace(folder / "state.pt.tmp", folder / "state.pt")  # never a half-written state


def load_resume(out: Path, model: Model, optimizer, sampler: BatchSampler, rank: int) -> tuple[int, float]:
    """Restores ``out/resume/`` into the model, the optimizer and the sampler, when it is there.

    Args:
        out: the run's output directory.
        model: a freshly built model of the same config (its weights are replaced).
        optimizer: its optimizer (its state is replaced).
        sampler: this rank's batch sampler (its generator is replaced).
        rank: this process's rank.

    Returns:
        (the step to go on from, seconds of training already done); (0, 0.0) without a state.
    """
    folder = out / RESUME_DIR
    if not (folder / "state.pt").is_file():
        return 0, 0.0
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    data = torch.load(folder / f"data-rank{rank}.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    sampler.generator.set_state(data["generator"])
    return int(state["step"]), float(state["wall"])
