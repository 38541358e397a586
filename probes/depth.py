"""Depth-attention weights alpha_{i->l} per site (paper Fig. 8) and depth-wise attention sinks (§6.2).

Sites have different numbers of sources K_l, so arrays are padded to Kmax with NaN and come with the
model's own label tuples. PreNorm has no routing: its fixed rule h_l = v_0 + sum v_i is reported as
weight 1 on every source (entropy is taken of the weights normalised to sum 1, i.e. log K_l).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._common import ProbeResult, expect_shape, mask_tokens, pad_last, site_kinds, to_numpy, trace

QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class DepthWeights(ProbeResult):
    """Depth-attention weights of every site (S = L+1 sites, Kmax = most sources at any site)."""

    residual: str  # "prenorm" | "full" | "block"
    sites: np.ndarray  # [S] int, site numbers l = 1..L+1
    kinds: tuple[str, ...]  # S: "attn" (pre-attention), "mlp" (pre-MLP) or "readout"
    sources: tuple[tuple[str, ...], ...]  # S label tuples, K_l labels each
    mask: np.ndarray  # [B, T] bool, True at real tokens
    per_token: np.ndarray  # [B, T, S, Kmax] weights; NaN at absent sources and padded tokens
    mean: np.ndarray  # [S, Kmax] mean over real tokens
    std: np.ndarray  # [S, Kmax] standard deviation over real tokens
    quantile_levels: np.ndarray  # [Q]
    quantiles: np.ndarray  # [Q, S, Kmax] quantiles over real tokens
    entropy_per_token: np.ndarray  # [B, T, S] nats, of the weights normalised to sum 1
    entropy: np.ndarray  # [S] mean entropy over real tokens

    def check(self) -> None:
        """Checks every shape against sites, mask and per_token."""
        S, (B, T), Q = len(self.sites), self.mask.shape, len(self.quantile_levels)
        k_max = max(len(s) for s in self.sources)
        if len(self.kinds) != S or len(self.sources) != S:
            raise ValueError(f"{S} sites but {len(self.kinds)} kinds and {len(self.sources)} label tuples")
        expect_shape("per_token", self.per_token, (B, T, S, k_max))
        for name in ("mean", "std"):
            expect_shape(name, getattr(self, name), (S, k_max))
        expect_shape("quantiles", self.quantiles, (Q, S, k_max))
        expect_shape("entropy_per_token", self.entropy_per_token, (B, T, S))
        expect_shape("entropy", self.entropy, (S,))

    def view(self, kind: str) -> DepthWeights:
        """The same result restricted to one kind of site: 'attn', 'mlp' or 'readout'."""
        rows = [i for i, k in enumerate(self.kinds) if k == kind]
        if not rows:
            raise ValueError(f"no site of kind {kind!r}; kinds are 'attn', 'mlp', 'readout'")
        k_max = max(len(self.sources[i]) for i in rows)
        return DepthWeights(
            self.residual,
            self.sites[rows],
            tuple(self.kinds[i] for i in rows),
            tuple(self.sources[i] for i in rows),
            self.mask,
            self.per_token[:, :, rows, :k_max],
            self.mean[rows, :k_max],
            self.std[rows, :k_max],
            self.quantile_levels,
            self.quantiles[:, rows, :k_max],
            self.entropy_per_token[:, :, rows],
            self.entropy[rows],
        )


def depth_weights(model, inputs, quantile_levels: Sequence[float] = QUANTILE_LEVELS) -> DepthWeights:
    """Depth-attention weights at every site, per token and summarised over tokens.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).
        quantile_levels: which quantiles of the per-token weights to report.

    Returns:
        DepthWeights.
    """
    tr = trace(model, inputs)
    mask = tr.batch.mask
    per_token = pad_last([tr.weights(l).float() for l in range(1, tr.n_sites + 1)])  # [B, T, S, Kmax]
    real = per_token[mask]  # [N, S, Kmax]
    levels = torch.tensor(list(quantile_levels), dtype=torch.float32, device=real.device)
    entropy = torch.stack([_entropy(tr.weights(l).float()) for l in range(1, tr.n_sites + 1)], dim=-1)
    return DepthWeights(
        residual=tr.residual,
        sites=np.arange(1, tr.n_sites + 1),
        kinds=site_kinds(tr.n_sites),
        sources=tuple(tr.labels),
        mask=to_numpy(mask),
        per_token=to_numpy(mask_tokens(per_token, mask)),
        mean=to_numpy(real.mean(0)),
        std=to_numpy(real.std(0, unbiased=False)),
        quantile_levels=to_numpy(levels),
        quantiles=to_numpy(torch.quantile(real, levels, dim=0)),
        entropy_per_token=to_numpy(mask_tokens(entropy, mask)),
        entropy=to_numpy(entropy[mask].mean(0)),
    )


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    """[B, T, K] non-negative weights -> [B, T] entropy (nats) of weights / sum."""
    p = weights / weights.sum(-1, keepdim=True)
    return -(p * p.clamp_min(1e-30).log()).sum(-1)


def _prompt_means(result: DepthWeights) -> np.ndarray:
    """[B, S, Kmax] mean weight of each prompt over its real tokens (NaN at absent sources)."""
    counts = result.mask.sum(1)[:, None, None]
    totals = np.where(result.mask[:, :, None, None], result.per_token, 0.0).sum(1)
    absent = np.isnan(result.mean)[None]
    return np.where(absent, np.nan, totals / counts)


@dataclass(frozen=True)
class DepthSinks(ProbeResult):
    """Sources that draw high weight whatever the token and the prompt (N sinks found)."""

    sites: np.ndarray  # [N] int, site number l
    source_index: np.ndarray  # [N] int, column in that site's label tuple
    labels: tuple[str, ...]  # N source labels
    mean: np.ndarray  # [N] mean weight over every real token of every prompt
    token_std: np.ndarray  # [N] standard deviation over those tokens
    prompt_std: np.ndarray  # [N] standard deviation of the per-prompt mean weights
    min_mean: float  # threshold used: mean >= min_mean
    max_std: float  # threshold used: token_std <= max_std and prompt_std <= max_std

    def check(self) -> None:
        """Checks that every per-sink array has N entries."""
        n = len(self.labels)
        for name in ("sites", "source_index", "mean", "token_std", "prompt_std"):
            expect_shape(name, getattr(self, name), (n,))


def depth_sinks(
    results: DepthWeights | Sequence[DepthWeights], min_mean: float = 0.3, max_std: float = 0.1
) -> DepthSinks:
    """Finds depth-attention sinks: high mean weight, low spread across tokens and prompts.

    Each batch row of each result counts as one prompt. A sink must also draw more than the uniform
    share 1/K_l (so single-source sites and a fresh, uniform model have none). PreNorm has no routing,
    so it has no sinks.

    Args:
        results: one or more DepthWeights of the same model.
        min_mean: a sink's mean weight is at least this.
        max_std: a sink's spread over tokens and over prompts is at most this.
    """
    results = [results] if isinstance(results, DepthWeights) else list(results)
    if not results or any(r.sources != results[0].sources for r in results):
        raise ValueError("depth_sinks needs one or more DepthWeights of the same model")
    tokens = np.concatenate([r.per_token[r.mask] for r in results])  # [N, S, Kmax]
    per_prompt = np.concatenate([_prompt_means(r) for r in results])  # [P, S, Kmax]
    mean, token_std, prompt_std = tokens.mean(0), tokens.std(0), per_prompt.std(0)
    above_uniform = mean > 1.0 / np.array([len(s) for s in results[0].sources])[:, None] + 1e-6
    found = above_uniform & (mean >= min_mean) & (token_std <= max_std) & (prompt_std <= max_std)
    if results[0].residual == "prenorm":
        found[:] = False
    rows, cols = np.nonzero(found)
    labels = tuple(results[0].sources[r][c] for r, c in zip(rows, cols, strict=True))
    return DepthSinks(
        results[0].sites[rows],
        cols,
        labels,
        mean[rows, cols],
        token_std[rows, cols],
        prompt_std[rows, cols],
        float(min_mean),
        float(max_std),
    )
