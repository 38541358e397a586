"""Which earlier layers each layer reads from, on the same axes for all three residual rules.

h_l is a sum of terms c_k = w_k * source_k (AttnRes: w = alpha; PreNorm: w = 1). The decomposition
share_k = <c_k, h_l> / ||h_l||^2 sums to exactly 1 over k (each share signed), so it gives the baseline
an implied depth mixing that can be set beside AttnRes's alpha. Block models keep their own sources
(block sums and the partial sum), with the model's labels; ``mixing`` spreads them back over v_0..v_L
(paper Fig. 9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnres.sources import SourceRule

from ._common import (
    ProbeResult,
    expect_shape,
    mask_tokens,
    masked_mean,
    pad_last,
    site_kinds,
    to_numpy,
    trace,
)
from .norms import rms


@dataclass(frozen=True)
class Retrieval(ProbeResult):
    """Reading pattern of every site (S = L+1 sites, Kmax = most sources at a site, k = top_k)."""

    residual: str  # "prenorm" | "full" | "block"
    attnres_block_size: int | None  # S, sublayers per depth block (Block only; None otherwise)
    sites: np.ndarray  # [S] int, l = 1..L+1
    kinds: tuple[str, ...]  # S: "attn" | "mlp" | "readout"
    sources: tuple[tuple[str, ...], ...]  # S label tuples (K_l each)
    mask: np.ndarray  # [B, T] bool, True at real tokens
    weight_mean: np.ndarray  # [S, Kmax] mean alpha (PreNorm: 1); NaN at absent sources
    weighted_norm_mean: np.ndarray  # [S, Kmax] mean of alpha_k * RMS(source_k)
    share: np.ndarray  # [B, T, S, Kmax] <c_k, h_l> / ||h_l||^2, sums to 1 over k; NaN where absent
    share_mean: np.ndarray  # [S, Kmax] share averaged over real tokens
    strength_kind: str  # what ranks sources: "weight" (AttnRes alpha) or "share" (PreNorm)
    top_sources: np.ndarray  # [S, k] int source indices, strongest first; -1 where K_l < k
    top_labels: tuple[tuple[str, ...], ...]  # S tuples of up to k labels, strongest first
    mixing: np.ndarray  # [S, L+1] mean weight that h_l gives each v_i, i = 0..L; NaN for i >= l

    def check(self) -> None:
        """Checks every shape against sites, mask and the label tuples."""
        S, (B, T) = len(self.sites), self.mask.shape
        k_max = max(len(s) for s in self.sources)
        for name in ("weight_mean", "weighted_norm_mean", "share_mean"):
            expect_shape(name, getattr(self, name), (S, k_max))
        expect_shape("share", self.share, (B, T, S, k_max))
        expect_shape("top_sources", self.top_sources, (S, None))
        expect_shape("mixing", self.mixing, (S, S))
        if len(self.kinds) != S or len(self.top_labels) != S:
            raise ValueError(f"{S} sites but {len(self.kinds)} kinds and {len(self.top_labels)} top labels")


def shares(tr, l: int) -> Tensor:
    """[B, T, K_l] signed share of each term of h_l: <c_k, h_l> / ||h_l||^2 (sums to 1 over k)."""
    terms = tr.contributions(l).float()  # [K, B, T, d]
    total = terms.sum(0)  # = h_l up to rounding; dividing by its own norm makes the shares sum to 1
    return torch.einsum("kbtd,btd->btk", terms, total) / total.pow(2).sum(-1, keepdim=True).clamp_min(1e-30)


def depth_retrieval(model, inputs, top_k: int = 3) -> Retrieval:
    """Measures which sources every site reads, for AttnRes and PreNorm alike.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).
        top_k: how many strongest sources to list per site (for a graph view).

    Returns:
        Retrieval.
    """
    tr = trace(model, inputs)
    mask, sites = tr.batch.mask, range(1, tr.n_sites + 1)
    weights = pad_last([tr.weights(l).float() for l in sites])  # [B, T, S, Kmax]
    weighted_norm = pad_last([tr.weights(l).float() * rms(tr.sources(l)).permute(1, 2, 0) for l in sites])
    share = pad_last([shares(tr, l) for l in sites])
    weight_mean, share_mean = _nan_mean(weights, mask), _nan_mean(share, mask)
    strength_kind = "share" if tr.residual == "prenorm" else "weight"
    strength = share_mean if strength_kind == "share" else weight_mean
    top = _top_sources(strength, [len(s) for s in tr.labels], top_k)
    return Retrieval(
        residual=tr.residual,
        attnres_block_size=model.config.attnres_block_size if tr.residual == "block" else None,
        sites=np.arange(1, tr.n_sites + 1),
        kinds=site_kinds(tr.n_sites),
        sources=tuple(tr.labels),
        mask=to_numpy(mask),
        weight_mean=to_numpy(weight_mean),
        weighted_norm_mean=to_numpy(_nan_mean(weighted_norm, mask)),
        share=to_numpy(mask_tokens(share, mask)),
        share_mean=to_numpy(share_mean),
        strength_kind=strength_kind,
        top_sources=top,
        top_labels=tuple(tuple(tr.labels[s][i] for i in row if i >= 0) for s, row in enumerate(top)),
        mixing=_mixing(model, tr.labels, to_numpy(weight_mean)),
    )


def _nan_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens of x [B, T, S, Kmax], keeping NaN at absent sources."""
    absent = torch.isnan(x[0, 0])
    return masked_mean(torch.nan_to_num(x), mask).masked_fill(absent, float("nan"))


def _top_sources(strength: Tensor, counts: list[int], k: int) -> np.ndarray:
    """[S, k] indices of the k largest entries per row (by absolute value), -1 past K_l."""
    order = torch.nan_to_num(strength.abs(), nan=-1.0).argsort(dim=-1, descending=True, stable=True)
    top = to_numpy(order[:, :k]).astype(np.int64)
    for row, count in enumerate(counts):
        top[row, count:] = -1
    return top


def _mixing(model, labels: list[tuple[str, ...]], weight_mean: np.ndarray) -> np.ndarray:
    """[S, L+1] the mean weight h_l gives each v_i: its source's weight (Fig. 9's depth-mixing matrix)."""
    n_sites, rule = len(labels), SourceRule.of(model.config)
    mixing = np.full((n_sites, n_sites), np.nan, dtype=np.float32)
    for row, site_labels in enumerate(labels):
        for k, label in enumerate(site_labels):
            mixing[row, list(rule.members(label, row + 1))] = weight_mean[row, k]
    return mixing
