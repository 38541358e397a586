"""The running state of a corpus sweep: every accumulator of one model, mergeable and saveable.

Token statistics weight every real token equally; sequence statistics take each sequence's own mean
as one observation, which is what the confidence intervals are over. Gradient norms of Transformer
blocks are one observation per batch (the gradient of the batch's mean loss).
"""

from __future__ import annotations

import numpy as np
import torch

from .accumulators import CoMoments, Histogram, Moments
from .measure import BatchStats, Layout


class SweepState:
    """Accumulators for one model.

    Token and sequence moments of every feature, alpha's histogram and its co-moments with the
    source RMS, the loss by position, and per-batch gradient norms.
    """

    def __init__(self, layout: Layout, present: torch.Tensor, seq_len: int, bins: int = 100, device="cpu"):
        S, K, n = layout.S, layout.K, layout.L // 2
        self.layout, self.present, self.seq_len = layout, present.to(device), int(seq_len)
        self.tokens = Moments((layout.width,), device)
        self.seqs = Moments((layout.width,), device)
        self.corr = CoMoments((S, K), device)  # alpha vs its source's RMS, per cell over tokens
        self.hist = Histogram(S * K, bins, device=device)
        self.loss_tokens = Moments((1,), device)
        self.loss_seqs = Moments((1,), device)
        self.loss_position = Moments((max(self.seq_len - 1, 1),), device)  # over sequences, per position
        self.block_grad = Moments((n,), device)  # over batches
        self.done = 0  # sequences folded in, in sweep order (resumption skips them)

    def parts(self) -> dict[str, object]:
        """name -> accumulator, in a fixed order."""
        names = ("tokens", "seqs", "corr", "hist", "loss_tokens", "loss_seqs")
        return {name: getattr(self, name) for name in names + ("loss_position", "block_grad")}

    def add(self, batch: BatchStats, mask: torch.Tensor) -> None:
        """Folds in one measured batch (mask [B, T] of real tokens)."""
        B, T = mask.shape
        columns, cells = batch.columns, batch.cells
        full = bool(mask.all())
        feats = batch.features
        rows = feats.reshape(B * T, -1) if full else feats[mask]
        self.tokens.add(rows, columns=columns)
        per_seq = feats.sum(1) if full else (feats * mask[..., None]).sum(1)
        lengths = mask.sum(1, keepdim=True).to(feats.dtype)
        self.seqs.add((per_seq / lengths).double(), columns=columns)  # B rows: float64 is cheap
        alpha = rows[:, : len(cells)]
        cell_rms = batch.cell_rms.reshape(alpha.shape) if full else batch.cell_rms[mask]
        self.corr.add_pair(alpha, cell_rms, columns=cells)  # absent cells are masked when read
        self.hist.add(alpha, cells=cells)
        has_target = mask[:, 1:] & mask[:, :-1]
        self.loss_tokens.add(batch.loss[has_target][:, None])
        per_seq = batch.loss.double().sum(1) / has_target.sum(1).clamp_min(1)
        self.loss_seqs.add(per_seq[:, None], (has_target.sum(1) > 0)[:, None])
        loss = torch.nn.functional.pad(batch.loss.double(), (0, self.seq_len - 1 - batch.loss.shape[1]))
        target = torch.nn.functional.pad(has_target, (0, self.seq_len - 1 - has_target.shape[1]))
        self.loss_position.add(loss, target)
        if batch.block_grad_norm is not None:
            self.block_grad.add(batch.block_grad_norm[None])
        self.done += B

    def merge(self, other: SweepState) -> None:
        """Folds in another state of the same model and settings (another shard)."""
        for name, part in self.parts().items():
            part.merge(other.parts()[name])
        self.done += other.done

    def state(self) -> dict[str, np.ndarray]:
        """Every accumulator as flat numpy arrays ('part.field' -> array)."""
        out = {"done": np.array(self.done)}
        for name, part in self.parts().items():
            out.update({f"{name}.{field}": value for field, value in part.state().items()})
        return out

    def load(self, arrays) -> None:
        """Restores ``state()`` output; ValueError when it belongs to another layout."""
        for name, part in self.parts().items():
            prefix = name + "."
            part.load({key[len(prefix) :]: arrays[key] for key in arrays if key.startswith(prefix)})
        self.done = int(arrays["done"])
