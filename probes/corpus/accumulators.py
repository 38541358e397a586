"""Streaming accumulators that merge exactly: moments, co-moments and fixed-bin histograms.

Each holds a few tensors (on the model's device, float64 where the device has it) and never grows with
the number of observations. ``add`` folds in a batch of observations along dim 0; ``merge`` folds in
another accumulator of the same shape (Chan, Golub and LeVeque's pairwise update, the parallel form
of Welford's algorithm), so sharded sweeps merge into exactly the statistics of one pass up to
rounding. ``state()`` / ``load()`` round-trip through plain numpy arrays (npz, no pickle).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def stat_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it (MPS does not)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _batch_moments(x: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(count, mean, sum of squared deviations) over dim 0 of x, counting only where w is True."""
    if w is None:
        mean = x.mean(0)
        centred = x - mean
        return torch.full_like(mean, x.shape[0]), mean, centred.mul_(centred).sum(0)
    wf = w.to(x.dtype).expand_as(x)
    x = torch.where(wf > 0, x, torch.zeros_like(x))
    n = wf.sum(0)
    mean = x.sum(0) / n.clamp_min(1)
    return n, mean, ((x - mean) * wf).pow(2).sum(0)


class Moments:
    """Count, mean and M2 (sum of squared deviations) of a quantity of shape X, elementwise."""

    FIELDS = ("n", "mean", "m2")

    def __init__(self, shape, device="cpu", dtype: torch.dtype | None = None):
        dtype = dtype or stat_dtype(device)
        self.n, self.mean, self.m2 = (torch.zeros(tuple(shape), dtype=dtype, device=device) for _ in range(3))

    def add(self, x: Tensor, w: Tensor | None = None, columns: Tensor | None = None) -> None:
        """Folds in observations x [N, *X] (w: bool mask broadcastable to x; None = all count).

        With ``columns`` (and no w), x is [N, C]: elements ``columns`` of the flat X, every other
        element being 0 in every observation.
        """
        if x.shape[0]:  # a batch's own moments in its dtype (centred, so float32 is exact enough)
            moments = (t.to(self.mean.dtype) for t in _batch_moments(x, w))
            self._fold(*(self._spread(t, columns, i == 0) for i, t in enumerate(moments)))

    def _spread(self, part: Tensor, columns: Tensor | None, count: bool) -> Tensor:
        """A batch moment of the measured columns as one of the whole shape (count: the n field)."""
        if columns is None:
            return part
        whole = torch.full(
            (self.mean.numel(),), part[0].item() if count else 0.0, dtype=part.dtype, device=part.device
        )
        return whole.index_copy_(0, columns, part).view(self.mean.shape)

    def merge(self, other: Moments) -> None:
        """Folds in another accumulator of the same shape."""
        self._fold(other.n, other.mean, other.m2)

    def _fold(self, n_b: Tensor, mean_b: Tensor, m2_b: Tensor) -> None:
        n = self.n + n_b
        delta = mean_b - self.mean
        frac = torch.where(n > 0, n_b / n.clamp_min(1), torch.zeros_like(n))
        self.mean = self.mean + delta * frac
        self.m2 = self.m2 + m2_b + delta.pow(2) * self.n * frac
        self.n = n

    def part(self, index: slice, shape) -> Moments:
        """A Moments holding elements ``index`` of this one's flat shape, reshaped to ``shape``."""
        out = Moments.__new__(Moments)
        out.n, out.mean, out.m2 = (getattr(self, f)[index].reshape(shape) for f in Moments.FIELDS)
        return out

    def variance(self, ddof: int = 0) -> np.ndarray:
        """Variance with ``ddof`` (0: population, 1: sample); NaN where n <= ddof."""
        n, m2 = self.n.cpu().numpy(), self.m2.cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > ddof, np.maximum(m2, 0.0) / (n - ddof), np.nan)

    def state(self) -> dict[str, np.ndarray]:
        """The accumulator as numpy arrays."""
        return {name: getattr(self, name).cpu().numpy() for name in self.FIELDS}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Restores ``state()`` output (shapes must match)."""
        for name in self.FIELDS:
            current = getattr(self, name)
            value = torch.as_tensor(np.asarray(state[name]), dtype=current.dtype, device=current.device)
            if value.shape != current.shape:
                raise ValueError(
                    f"saved {name} has shape {tuple(value.shape)}, expected {tuple(current.shape)}"
                )
            setattr(self, name, value)


class CoMoments(Moments):
    """Moments of two quantities x and y of shape X plus their co-moment: the correlation, streamed."""

    FIELDS = ("n", "mean", "m2", "mean_y", "m2_y", "c")

    def __init__(self, shape, device="cpu", dtype: torch.dtype | None = None):
        super().__init__(shape, device, dtype)
        self.mean_y, self.m2_y, self.c = (torch.zeros_like(self.mean) for _ in range(3))

    def add_pair(self, x: Tensor, y: Tensor, w: Tensor | None = None, columns: Tensor | None = None) -> None:
        """Folds in paired observations x, y [N, *X] (w and columns as in ``Moments.add``)."""
        if not x.shape[0]:
            return
        if w is None:  # each deviation once, for its square and the product
            mx, my = x.mean(0), y.mean(0)
            dx, dy = x - mx, y - my
            n_b = torch.full_like(mx, x.shape[0])
            parts = (n_b, mx, (dx * dx).sum(0), my, (dy * dy).sum(0), dx.mul_(dy).sum(0))
        else:
            n_b, mx, m2x = _batch_moments(x, w)
            _, my, m2y = _batch_moments(y, w)
            dx, dy = x - mx, y - my
            prod = torch.where(w.expand_as(dx), dx * dy, torch.zeros_like(dx))
            parts = (n_b, mx, m2x, my, m2y, prod.sum(0))
        self._fold_pair(*(self._spread(t.to(self.mean.dtype), columns, i == 0) for i, t in enumerate(parts)))

    def merge(self, other: CoMoments) -> None:
        """Folds in another accumulator of the same shape."""
        self._fold_pair(other.n, other.mean, other.m2, other.mean_y, other.m2_y, other.c)

    def _fold_pair(self, n_b, mx, m2x, my, m2y, c_b) -> None:
        n = self.n + n_b
        frac = torch.where(n > 0, n_b / n.clamp_min(1), torch.zeros_like(n))
        dx, dy = mx - self.mean, my - self.mean_y
        self.c = self.c + c_b + dx * dy * self.n * frac
        self.mean_y = self.mean_y + dy * frac
        self.m2_y = self.m2_y + m2y + dy.pow(2) * self.n * frac
        self._fold(n_b, mx, m2x)

    def pooled(self, axis: int, present: Tensor) -> CoMoments:
        """The co-moments of all cells along ``axis`` taken together.

        present (bool) says which cells exist; the result is merged exactly from the per-cell
        co-moments (Chan's update over cells).
        """
        w = present.to(self.n.dtype)
        n_k = self.n * w
        n = n_k.sum(axis)
        safe = n.clamp_min(1).unsqueeze(axis)
        mx, my = (
            (n_k * self.mean).sum(axis, keepdim=True) / safe,
            (n_k * self.mean_y).sum(axis, keepdim=True) / safe,
        )
        dx, dy = self.mean - mx, self.mean_y - my
        out = CoMoments.__new__(CoMoments)
        out.n, out.mean, out.mean_y = n, mx.squeeze(axis), my.squeeze(axis)
        out.m2 = ((self.m2 + n_k * dx * dx) * w).sum(axis)
        out.m2_y = ((self.m2_y + n_k * dy * dy) * w).sum(axis)
        out.c = ((self.c + n_k * dx * dy) * w).sum(axis)
        return out

    def correlation(self) -> np.ndarray:
        """Pearson correlation of x and y; NaN where either has no spread or n < 2."""
        m2x, m2y, c = (t.cpu().numpy() for t in (self.m2, self.m2_y, self.c))
        denom = np.sqrt(np.maximum(m2x, 0) * np.maximum(m2y, 0))
        scale = np.maximum(np.abs(m2x), np.abs(m2y))
        ok = (self.n.cpu().numpy() >= 2) & (denom > 1e-12 * np.maximum(scale, 1e-300))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ok, c / np.where(ok, denom, 1.0), np.nan)


class Histogram:
    """Counts of values in [low, high] in ``bins`` equal bins per cell (values outside are clamped)."""

    def __init__(self, cells: int, bins: int = 100, low: float = 0.0, high: float = 1.0, device="cpu"):
        self.bins, self.low, self.high = int(bins), float(low), float(high)
        self.counts = torch.zeros(cells, self.bins, dtype=torch.int64, device=device)

    def add(self, x: Tensor, w: Tensor | None = None, cells: Tensor | None = None) -> None:
        """Folds in x [N, cells] (w: bool [N, cells] or broadcastable; None = all count).

        With ``cells`` (long [C]), x is [N, C]: values of those cells only (the others get no counts).
        """
        total = self.counts.shape[0]
        if cells is None:
            cells = torch.arange(total, device=x.device)
        scaled = (x.float() - self.low) * (self.bins / (self.high - self.low))
        index = scaled.long().clamp_(0, self.bins - 1) + cells * self.bins
        if w is not None:
            index = index[w.expand_as(index)]
        self.counts += torch.bincount(index.reshape(-1), minlength=total * self.bins).view(total, self.bins)

    def merge(self, other: Histogram) -> None:
        """Adds another histogram's counts."""
        self.counts += other.counts

    def quantiles(self, levels) -> np.ndarray:
        """[Q, cells] quantiles, linear within a bin (error at most one bin width); NaN for empty cells."""
        counts = self.counts.cpu().numpy().astype(np.float64)  # [cells, bins]
        total, cum = counts.sum(1), np.cumsum(counts, 1)
        edges = np.linspace(self.low, self.high, self.bins + 1)
        target = np.asarray(levels, dtype=np.float64)[:, None] * total  # [Q, cells]
        # the first bin whose cumulative count reaches the target (searchsorted, side "left")
        b = np.minimum((cum[None] < target[..., None]).sum(-1), self.bins - 1)
        cells = np.arange(len(counts))
        before = np.where(b > 0, cum[cells, np.maximum(b - 1, 0)], 0.0)
        here = counts[cells, b]
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = np.where(here > 0, (target - before) / here, 0.0)
        out = edges[b] + inside * (edges[b + 1] - edges[b])
        return np.where(total > 0, out, np.nan)

    def state(self) -> dict[str, np.ndarray]:
        """The counts as a numpy array."""
        return {"counts": self.counts.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Restores ``state()`` output."""
        counts = torch.as_tensor(np.asarray(state["counts"]), dtype=torch.int64, device=self.counts.device)
        if counts.shape != self.counts.shape:
            raise ValueError(
                f"saved histogram has shape {tuple(counts.shape)}, expected {tuple(self.counts.shape)}"
            )
        self.counts = counts
