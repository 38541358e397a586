"""Training lab: a PreNorm model and its AttnRes twin trained side by side, live.

Both twins start from the same seed and read the same batches in the same order; a background
thread gives each one optimiser step in turn, so they progress together. ``run.state()`` is a
thread-safe snapshot of what has happened so far: both loss curves, and, on a fixed probe prompt,
the AttnRes twin's depth weights (uniform at step 0, the queries being zero-initialised) and the
stream RMS per site of both twins (PreNorm's grows with depth: signal dilution).

    run = TwinRun(PRESETS["tiny (CPU, ~1 min)"], rule="block", attnres_block_size=2)
    run.state().departure          # max |alpha - 1/K| of the AttnRes twin; 0 at step 0
    run.stop()                     # the thread ends within one step
    run.save("attnres", "runs/my-block")

The training pieces are those of ``attnres.train`` (model, optimiser, schedule, step) and a saved twin's
card is ``attnres.card``'s; nothing here imports streamlit.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .card import save_trained, training_summary
from .config import BLOCK_FAMILIES
from .data import BatchSampler, heldout_loss, load_corpus
from .device import autocast_for, select_device
from .lab_limits import PRESETS, LabError, Preset, check_fits
from .train import TrainArgs, build_model, lr_at, make_optimizer, train_step

__all__ = ["PRESETS", "PROBE_TEXT", "TWINS", "LabError", "LabState", "Preset", "TwinRun", "departure"]

TWINS = ("prenorm", "attnres")
PROBE_TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune"
)
VISIBLE = 0.05  # max |alpha - 1/K| at which a heatmap visibly leaves uniform


@functools.lru_cache(maxsize=1)
def _corpus():
    return load_corpus()


def departure(depth_weights: np.ndarray) -> float:
    """max over sites and sources of |alpha - 1/K_l| (0 for uniform weights; NaN pads ignored).

    Args:
        depth_weights: [sites, Kmax] token-mean weights, absent sources NaN.
    """
    counts = np.isfinite(depth_weights).sum(1, keepdims=True)
    gap = np.abs(depth_weights - 1.0 / np.maximum(counts, 1))
    return float(np.nanmax(gap)) if np.isfinite(gap).any() else 0.0


@dataclass(frozen=True, eq=False)
class LabState:
    """What a run has done so far (a copy: later steps never change it)."""

    status: str  # "running" | "stopped" | "finished" | "error"
    message: str  # one sentence about the status (why it ended, the error)
    step: int  # optimiser steps taken by each twin
    max_steps: int
    tokens: int  # training tokens seen by each twin
    elapsed_s: float
    tokens_per_s: float  # tokens per wall-clock second, per twin (the twins share the time)
    losses: dict[str, tuple[float, ...]]  # twin -> train loss at steps 1..step
    val_losses: dict[str, tuple[tuple[int, float], ...]]  # twin -> (step, held-out loss)
    probe_step: int  # the step at which the probe fields below were measured
    depth_weights: np.ndarray  # [L+1, Kmax] AttnRes twin's token-mean alpha; NaN = no source
    depth_sources: tuple[tuple[str, ...], ...]  # the L+1 sites' source labels
    stream_rms: dict[str, np.ndarray]  # twin -> [L+1] token-mean RMS(h_l), l = 1..L+1
    departure: float  # max |alpha - 1/K| of depth_weights
    visible_at: tuple[int, float] | None  # (step, seconds) of the first probe with departure > VISIBLE
    names: dict[str, str] = field(default_factory=dict)  # twin -> display name

    def log_rows(self, twin: str) -> list[dict]:
        """Rows like train_log.csv's (step, train_loss, val_loss) for ``figures.loss_curves``."""
        val = dict(self.val_losses[twin])
        return [
            {"step": i, "train_loss": loss, "val_loss": val.get(i)}
            for i, loss in enumerate(self.losses[twin], start=1)
        ]


class TwinRun:
    """Trains a PreNorm model and an AttnRes twin (same seed, same batches) in a daemon thread."""

    def __init__(
        self,
        preset: Preset,
        rule: str = "block",
        attnres_block_size: int | None = 2,
        block: str = "gpt",
        device: str = "auto",
        seed: int = 1337,
        max_steps: int | None = None,
        max_seconds: float | None = None,
        start: bool = True,
    ):
        """Builds both twins and (unless ``start=False``) starts training.

        Args:
            preset: sizes and budget (``PRESETS``).
            rule: the AttnRes twin's rule, "full" or "block".
            attnres_block_size: S, sublayers per block (block only).
            block: both twins' block family, "gpt" or "llama" (``config.BLOCK_FAMILIES``).
            device: "cpu", "cuda", "mps" or "auto" (the best available).
            seed: weights of both twins and the data order.
            max_steps: step budget (default: the preset's).
            max_seconds: wall-time budget (default: the preset's).
            start: start the thread now.

        Raises:
            LabError: a bad rule, or the preset does not fit the device's memory.
        """
        if rule not in ("full", "block"):
            raise LabError(f"The AttnRes twin's rule must be 'full' or 'block', not {rule!r}.")
        if rule == "block" and (attnres_block_size is None or attnres_block_size < 1):
            raise LabError("Block AttnRes needs a block size S of at least 1 sublayer.")
        if block not in BLOCK_FAMILIES:
            raise LabError(f"The block must be one of {', '.join(BLOCK_FAMILIES)}, not {block!r}.")
        self.preset, self.rule, self.seed, self.block = preset, rule, seed, block
        self.device = select_device(device)
        self.notes = check_fits(preset, self.device, rule, attnres_block_size, block=block)
        self.max_steps = max_steps or preset.steps
        self.max_seconds = max_seconds or preset.max_seconds
        corpus = _corpus()
        self.args = {twin: self._args(twin, attnres_block_size) for twin in TWINS}
        self.models = {t: build_model(a, corpus.tokenizer).to(self.device) for t, a in self.args.items()}
        self.optimizers = {t: make_optimizer(m, self.args[t]) for t, m in self.models.items()}
        self.sampler = BatchSampler(corpus.train, preset.block_size, preset.batch_size, seed)
        self.autocast = autocast_for(self.device, "bf16")
        ids = corpus.tokenizer.encode(PROBE_TEXT)[-preset.block_size :]  # what probes keep, too
        self.probe_ids = torch.tensor([ids], device=self.device)
        self.names = {"prenorm": "PreNorm", "attnres": self._attnres_name()}
        self._model_lock, self._state_lock = threading.Lock(), threading.Lock()
        self._stop = threading.Event()
        self._status, self._message = "running", "Training."
        self._losses = {twin: [] for twin in TWINS}
        self._val = {twin: [] for twin in TWINS}
        self._step, self._started, self._ended = 0, time.time(), None
        self._visible_at = None
        self._probe()
        self._thread = threading.Thread(target=self._run, name="attnres-lab", daemon=True)
        if start:
            self.start()

    def _args(self, twin: str, block_size_s: int | None) -> TrainArgs:
        p = self.preset
        residual = "prenorm" if twin == "prenorm" else self.rule
        return TrainArgs(
            out=f"lab-{residual}",
            residual=residual,
            attnres_block_size=block_size_s if residual == "block" else None,
            block=self.block,
            n_layer=p.n_layer,
            n_head=p.n_head,
            d_model=p.d_model,
            block_size=p.block_size,
            batch_size=p.batch_size,
            steps=self.max_steps,
            lr=p.lr,
            min_lr=p.lr / 10,
            warmup=p.warmup,
            seed=self.seed,
            eval_every=p.eval_every,
            eval_windows=p.eval_windows,
            device=self.device.type,
            progress=False,
        )

    def _attnres_name(self) -> str:
        if self.rule == "full":
            return "Full AttnRes"
        return f"Block AttnRes (S={self.args['attnres'].attnres_block_size})"

    # ---- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Starts the training thread (once)."""
        self._started = time.time()
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                reason = self._why_end()
                if reason:
                    self._end(*reason)
                    return
                self._train_pair()
        except Exception as exc:  # noqa: BLE001 (the page shows the sentence; the thread must end)
            self._end("error", f"Training failed: {exc.__class__.__name__}: {exc}"[:300])

    def _why_end(self) -> tuple[str, str] | None:
        if self._stop.is_set():
            return "stopped", f"Stopped by the user after {self._step} steps."
        if self._step >= self.max_steps:
            return "finished", f"Finished: all {self.max_steps} steps done."
        if time.time() - self._started >= self.max_seconds:
            return "finished", (
                f"Finished at the wall-time limit of {self.max_seconds:g} s "
                f"({self._step} of {self.max_steps} steps)."
            )
        return None

    def _end(self, status: str, message: str) -> None:
        with self._state_lock:
            self._status, self._message, self._ended = status, message, time.time()

    def _train_pair(self) -> None:
        """One step of each twin on the same batch; then validation and probes when due."""
        x, y = (t.to(self.device) for t in self.sampler.next())
        losses = {}
        for twin in TWINS:
            model, optimizer = self.models[twin], self.optimizers[twin]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(self._step, self.args[twin])
            with self._model_lock:
                losses[twin] = train_step(model, model, optimizer, x, y, 1.0, self.autocast)[0]
        step = self._step + 1
        val = {}
        if step % self.preset.eval_every == 0 or step == self.max_steps:
            held_out, windows = _corpus().val, self.preset.eval_windows
            val = {twin: heldout_loss(model, held_out, windows) for twin, model in self.models.items()}
        with self._state_lock:
            self._step = step
            for twin in TWINS:
                self._losses[twin].append(losses[twin])
                if twin in val:
                    self._val[twin].append((step, val[twin]))
        if step % self.preset.probe_every == 0 or step == self.max_steps:
            self._probe()

    @torch.no_grad()
    def _probe(self) -> None:
        """Depth weights and stream RMS on the probe prompt; CPU copies of both twins for probes."""
        rms, weights, copies = {}, None, {}
        for twin, model in self.models.items():
            model.eval()
            internals = model(self.probe_ids, return_internals=True).internals
            model.train()
            rms[twin] = np.array([_rms(h) for h in internals.layer_inputs])  # [L+1]
            if internals.depth_weights is not None:
                weights = _token_mean_matrix(internals.depth_weights)
                sources = tuple(internals.depth_sources)
            copies[twin] = copy.deepcopy(model).to("cpu").eval()
        gap = departure(weights)
        with self._state_lock:
            if gap > VISIBLE and self._visible_at is None:
                self._visible_at = (self._step, time.time() - self._started)
            self._probed = (self._step, weights, sources, rms, gap, copies)

    # ---- what callers see --------------------------------------------------------------------
    def state(self) -> LabState:
        """A thread-safe snapshot of the run so far."""
        with self._state_lock:
            probe_step, weights, sources, rms, gap, _ = self._probed
            elapsed = (self._ended or time.time()) - self._started
            tokens = self._step * self.preset.batch_size * self.preset.block_size
            return LabState(
                status=self._status,
                message=self._message,
                step=self._step,
                max_steps=self.max_steps,
                tokens=tokens,
                elapsed_s=elapsed,
                tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0,
                losses={t: tuple(v) for t, v in self._losses.items()},
                val_losses={t: tuple(v) for t, v in self._val.items()},
                probe_step=probe_step,
                depth_weights=weights.copy(),
                depth_sources=sources,
                stream_rms={t: v.copy() for t, v in rms.items()},
                departure=gap,
                visible_at=self._visible_at,
                names=dict(self.names),
            )

    def probe_models(self) -> tuple[int, dict]:
        """(step, twin -> CPU eval copy of the model at that step), for ``probes`` on live runs.

        The copies are never trained further; a new pair is made at every probe step.
        """
        with self._state_lock:
            return self._probed[0], dict(self._probed[5])

    @property
    def running(self) -> bool:
        """True while the training thread is alive."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> bool:
        """Asks the thread to stop after the current step; returns True once it has ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._status == "running":
            self._end("stopped", "Stopped before training started.")
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> LabState:
        """Blocks until the run ends (or ``timeout`` seconds pass); returns the state."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return self.state()

    def save(self, which: str, directory) -> Path:
        """Saves one twin ("prenorm" or "attnres") with ``save_model`` and a model card.

        Args:
            which: "prenorm" or "attnres".
            directory: target checkpoint directory (created if missing).

        Returns:
            The checkpoint directory.
        """
        if which not in TWINS:
            raise LabError(f"Choose which twin to save: 'prenorm' or 'attnres', not {which!r}.")
        with self._model_lock:
            model = copy.deepcopy(self.models[which]).to("cpu").eval()
        state = self.state()
        args = replace(self.args[which], out=str(directory))
        other = self.names["attnres" if which == "prenorm" else "prenorm"]
        summary = training_summary(
            model,
            _corpus(),
            self.preset.eval_windows,
            steps=state.step,
            tokens=state.tokens,
            batch=f"{self.preset.batch_size} x {self.preset.block_size} characters",
            seed=self.seed,
            device=self.device,
            wall_s=state.elapsed_s,
            command=self._command(which, state),
            trained_in=f"the training lab, preset {self.preset.name}, beside a {other} twin",
        )
        lab = {"preset": self.preset.name, "twin": which, "rule": self.rule, "block": self.block}
        return save_trained(model, args, summary, lab=lab)

    def _command(self, which: str, state: LabState) -> str:
        """The command that trains this twin again and saves it (the card's "Reproduce")."""
        return (
            'python -c "from attnres.lab import PRESETS, TwinRun; '
            f"run = TwinRun(PRESETS[{self.preset.name!r}], rule={self.rule!r}, block={self.block!r}, "
            f"attnres_block_size={self.args['attnres'].attnres_block_size}, device={self.device.type!r}, "
            f"seed={self.seed}, max_steps={max(state.step, 1)}, max_seconds=1e9); "
            f"run.wait(); run.save({which!r}, 'out')\""
        )


def _rms(h: torch.Tensor) -> float:
    """Token mean of RMS over d_model (as ``probes.stream_norms``' input_rms_mean)."""
    return h.float().pow(2).mean(-1).sqrt().mean().item()


def _token_mean_matrix(depth_weights: list) -> np.ndarray:
    """list of L+1 [1, T, K_l] tensors -> [L+1, Kmax] token means, NaN where a site has no source."""
    k_max = max(w.shape[-1] for w in depth_weights)
    matrix = np.full((len(depth_weights), k_max), np.nan)
    for site, w in enumerate(depth_weights):
        matrix[site, : w.shape[-1]] = w.float().mean(dim=(0, 1)).cpu().numpy()
    return matrix
