"""Frozen results of a corpus sweep, built from its accumulators.

Confidence intervals are Student-t intervals over sequences: each sequence's mean over its own tokens
is one observation, and the interval is seq_mean +- t(0.975, n-1) * seq_std / sqrt(n) (seq_std with
n-1 in the denominator). Tokens within a sequence are not independent, so sequences are the unit; a
corpus of identical sequences has seq_std 0 and an interval of width 0. Block gradient norms are the
exception: one observation per batch (unit "batch").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._common import ProbeResult, site_kinds
from .state import SweepState

QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class Estimate(ProbeResult):
    """One quantity over a corpus, elementwise over its shape X."""

    mean: np.ndarray  # [X] mean over every real token (NaN where absent)
    token_std: np.ndarray  # [X] standard deviation over tokens (NaN for unit "batch")
    seq_mean: np.ndarray  # [X] mean of the per-unit means (equals mean for equal-length sequences)
    seq_std: np.ndarray  # [X] sample standard deviation of the per-unit means: the across-input spread
    ci_half: np.ndarray  # [X] half width of the 95% t-interval of seq_mean
    n: np.ndarray  # [X] units (sequences or batches) behind seq_mean
    unit: str  # "sequence" or "batch"

    @property
    def ci_low(self) -> np.ndarray:
        """seq_mean - ci_half."""
        return self.seq_mean - self.ci_half

    @property
    def ci_high(self) -> np.ndarray:
        """seq_mean + ci_half."""
        return self.seq_mean + self.ci_half


def t_half_width(std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half width of the 95% Student-t interval of a mean of n observations with sample std."""
    from scipy import stats as scipy_stats  # noqa: PLC0415 (scipy.stats takes a second to import)

    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = scipy_stats.t.ppf(0.975, np.maximum(n - 1, 1))
        return np.where(n >= 2, t * std / np.sqrt(n), np.nan)


def estimate(tokens, seqs, absent=None, unit: str = "sequence") -> Estimate:
    """An Estimate from token Moments (or None) and per-unit Moments of the same shape."""
    seq_std = np.sqrt(seqs.variance(ddof=1))
    n = seqs.n.cpu().numpy()
    arrays = {
        "mean": (tokens or seqs).mean.cpu().numpy(),
        "token_std": np.sqrt(tokens.variance()) if tokens is not None else np.full_like(seq_std, np.nan),
        "seq_mean": seqs.mean.cpu().numpy(),
        "seq_std": seq_std,
        "ci_half": t_half_width(seq_std, n),
    }
    absent = (n == 0) if absent is None else (absent | (n == 0))
    arrays = {k: np.where(absent, np.nan, v) for k, v in arrays.items()}
    return Estimate(**arrays, n=n, unit=unit)


@dataclass(frozen=True)
class CorpusStats(ProbeResult):
    """Corpus-level routing and magnitudes of one model (S = L+1 sites, Kmax sources, n blocks)."""

    residual: str  # "prenorm" | "full" | "block"
    sites: np.ndarray  # [S] int, l = 1..L+1
    kinds: tuple[str, ...]  # S: "attn" | "mlp" | "readout"
    sources: tuple[tuple[str, ...], ...]  # S label tuples
    corpus: str  # the source as given
    corpus_digest: str  # sha256 of the sequences' token ids
    model_fingerprint: str  # sha256 of the model's config and weights
    n_sequences: int  # sequences the statistics rest on
    n_tokens: int  # real tokens the statistics rest on
    seq_len: int  # tokens per sequence (the last of a short document may have fewer)
    complete: bool  # False when the sweep was stopped early (a resumable partial result)
    alpha: Estimate  # [S, Kmax] routing weight per (site, source) (PreNorm: 1)
    weighted_norm: Estimate  # [S, Kmax] alpha * RMS(source)
    quantile_levels: np.ndarray  # [Q]
    alpha_quantiles: np.ndarray  # [Q, S, Kmax] over tokens, from a 100-bin histogram on [0, 1]
    alpha_histogram: np.ndarray  # [S, Kmax, bins] token counts
    source_rms: np.ndarray  # [S, Kmax] mean RMS of each cell's source
    alpha_rms_corr: np.ndarray  # [S, Kmax] Pearson r over tokens of alpha_k with RMS(source_k)
    alpha_rms_corr_site: np.ndarray  # [S] the same pooled over every (token, source) of a site
    max_weight: Estimate  # [S] largest normalised weight at a site (routing collapse: near 1)
    entropy: Estimate  # [S] nats of the normalised weights (uniform: log K_l)
    uniform_weight: np.ndarray  # [S] 1 / K_l, the max weight of a uniform site
    max_entropy: np.ndarray  # [S] log K_l
    input_rms: Estimate  # [S] RMS of h_l
    update_ratio: Estimate  # [L] ||v_l|| / ||h_l||
    update_share: Estimate  # [L] share of h_{l+1} held by the term holding v_l
    block_output_rms: Estimate  # [n] carried state after Transformer block i (Fig. 5b)
    block_update_rms: Estimate  # [n] RMS of block i's own update v_{2i-1} + v_{2i}
    lens_kl: Estimate | None  # [S] KL(p_final || logit lens at h_l); None when not measured
    stream_grad_norm: Estimate | None  # [S] ||d loss / d h_l|| per token; None without gradients
    block_grad_norm: Estimate | None  # [n] per batch (unit "batch", Fig. 5c); None without gradients
    loss: Estimate  # [1] next-token cross-entropy (nats)
    loss_by_position: Estimate  # [seq_len - 1] by the position of the predicting token

    def check(self) -> None:
        """Checks the per-cell shapes against the label tuples."""
        S, k_max = len(self.sites), max(len(s) for s in self.sources)
        for name in ("alpha", "weighted_norm"):
            if getattr(self, name).mean.shape != (S, k_max):
                raise ValueError(
                    f"field '{name}' has shape {getattr(self, name).mean.shape}, expected {(S, k_max)}"
                )
        if self.alpha_quantiles.shape != (len(self.quantile_levels), S, k_max):
            raise ValueError(f"alpha_quantiles has shape {self.alpha_quantiles.shape}")

    @property
    def n_sites(self) -> int:
        """S = L + 1."""
        return len(self.sites)


def build_stats(state: SweepState, labels, meta: dict) -> CorpusStats:
    """The frozen result of a sweep state; meta holds the identity fields (corpus, digests, ...)."""
    layout = state.layout
    absent = ~state.present.cpu().numpy()
    slices = layout.slices()

    def feature(name, mask=None):
        part, shape = slices[name]
        return estimate(state.tokens.part(part, shape), state.seqs.part(part, shape), mask)

    S, K = layout.S, layout.K
    counts = np.array([len(s) for s in labels], dtype=np.float64)
    hist = state.hist.counts.cpu().numpy().reshape(S, K, -1)
    quantiles = state.hist.quantiles(QUANTILE_LEVELS).reshape(len(QUANTILE_LEVELS), S, K)
    grads = layout.gradients and bool(state.block_grad.n.sum() > 0)
    return CorpusStats(
        residual=meta["residual"],
        sites=np.arange(1, S + 1),
        kinds=site_kinds(S),
        sources=tuple(tuple(s) for s in labels),
        corpus=meta["corpus"],
        corpus_digest=meta["corpus_digest"],
        model_fingerprint=meta["model_fingerprint"],
        n_sequences=int(state.seqs.n[0].item()) if layout.width else 0,
        n_tokens=int(state.tokens.n[0].item()) if layout.width else 0,
        seq_len=state.seq_len,
        complete=bool(meta.get("complete", True)),
        alpha=feature("alpha", absent),
        weighted_norm=feature("weighted_norm", absent),
        quantile_levels=np.array(QUANTILE_LEVELS),
        alpha_quantiles=np.where(absent[None], np.nan, quantiles),
        alpha_histogram=hist,
        source_rms=np.where(absent, np.nan, state.corr.mean_y.cpu().numpy()),
        alpha_rms_corr=np.where(absent, np.nan, state.corr.correlation()),
        alpha_rms_corr_site=state.corr.pooled(1, state.present).correlation(),
        max_weight=feature("max_weight"),
        entropy=feature("entropy"),
        uniform_weight=1.0 / counts,
        max_entropy=np.log(counts),
        input_rms=feature("input_rms"),
        update_ratio=feature("update_ratio"),
        update_share=feature("update_share"),
        block_output_rms=feature("block_output_rms"),
        block_update_rms=feature("block_update_rms"),
        lens_kl=feature("lens_kl") if layout.lens else None,
        stream_grad_norm=feature("stream_grad_norm") if layout.gradients else None,
        block_grad_norm=estimate(None, state.block_grad, unit="batch") if grads else None,
        loss=estimate(state.loss_tokens, state.loss_seqs),
        loss_by_position=estimate(None, state.loss_position),
    )
