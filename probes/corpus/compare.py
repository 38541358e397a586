"""Reading a corpus result: input-independent sinks, one prompt against the corpus, two models apart.

Sinks follow the paper's definition (§6.2): sources that draw high weight whatever the input, i.e. a
high mean with a small spread over tokens *and* over sequences. A prompt's routing is unusual at a
cell when its mean weight lies several across-sequence standard deviations from the corpus mean. Two
models differ at a quantity when their 95% intervals say so: |b - a| exceeds the half width of the
difference's interval, sqrt(ci_a^2 + ci_b^2) (the Welch interval for large samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._common import ProbeResult, expect_shape
from .result import CorpusStats


@dataclass(frozen=True)
class CorpusSinks(ProbeResult):
    """Depth-wise sinks over a corpus (N found)."""

    sites: np.ndarray  # [N] int, site l
    source_index: np.ndarray  # [N] int, column in that site's label tuple
    labels: tuple[str, ...]  # N source labels
    mean: np.ndarray  # [N] mean weight over every token of every sequence
    token_std: np.ndarray  # [N] spread over tokens
    seq_std: np.ndarray  # [N] spread of the per-sequence means (across inputs)
    ci_half: np.ndarray  # [N] 95% t-interval half width of the per-sequence mean
    q10: np.ndarray  # [N] 10% quantile over tokens: nine tokens in ten give at least this
    n_sequences: int  # what the table rests on
    n_tokens: int
    min_mean: float  # thresholds: mean >= min_mean, token_std and seq_std <= max_std
    max_std: float

    def check(self) -> None:
        """Checks that every per-sink array has N entries."""
        n = len(self.labels)
        for name in ("sites", "source_index", "mean", "token_std", "seq_std", "ci_half", "q10"):
            expect_shape(name, getattr(self, name), (n,))


def corpus_sinks(stats: CorpusStats, min_mean: float = 0.3, max_std: float = 0.1) -> CorpusSinks:
    """Sources with a high, steady weight: depth-attention sinks.

    Mean weight >= min_mean (and above the uniform 1/K_l), spread over tokens and over sequences at
    most max_std. PreNorm has none; fewer than 2 sequences show none either (one input cannot show
    that a weight holds whatever the input).
    """
    a = stats.alpha
    with np.errstate(invalid="ignore"):
        found = (a.mean > stats.uniform_weight[:, None] + 1e-6) & (a.mean >= min_mean)
        found &= (a.token_std <= max_std) & (a.seq_std <= max_std) & (a.n >= 2)
    if stats.residual == "prenorm":
        found[:] = False
    rows, cols = np.nonzero(found)
    return CorpusSinks(
        sites=stats.sites[rows],
        source_index=cols,
        labels=tuple(stats.sources[r][c] for r, c in zip(rows, cols, strict=True)),
        mean=a.mean[rows, cols],
        token_std=a.token_std[rows, cols],
        seq_std=a.seq_std[rows, cols],
        ci_half=a.ci_half[rows, cols],
        q10=stats.alpha_quantiles[0][rows, cols],
        n_sequences=stats.n_sequences,
        n_tokens=stats.n_tokens,
        min_mean=float(min_mean),
        max_std=float(max_std),
    )


@dataclass(frozen=True)
class PromptVsCorpus(ProbeResult):
    """One prompt's mean routing against the corpus's (S sites, Kmax sources)."""

    sites: np.ndarray  # [S]
    sources: tuple[tuple[str, ...], ...]
    prompt_mean: np.ndarray  # [S, Kmax] the prompt's mean weight over its tokens
    corpus_mean: np.ndarray  # [S, Kmax] mean of the corpus's per-sequence means
    corpus_seq_std: np.ndarray  # [S, Kmax] their spread
    z: np.ndarray  # [S, Kmax] (prompt - corpus) / max(spread, std_floor)
    unusual: np.ndarray  # [S, Kmax] bool: |z| >= z_threshold and |prompt - corpus| >= min_difference
    n_sequences: int
    prompt_tokens: int
    z_threshold: float
    min_difference: float

    def check(self) -> None:
        """Checks every cell array against prompt_mean."""
        for name in ("corpus_mean", "corpus_seq_std", "z", "unusual"):
            expect_shape(name, getattr(self, name), self.prompt_mean.shape)


def prompt_vs_corpus(
    dw, stats: CorpusStats, z_threshold: float = 3.0, min_difference: float = 0.05, std_floor: float = 0.01
) -> PromptVsCorpus:
    """Where one prompt's routing is unusual for this model.

    Args:
        dw: ``probes.DepthWeights`` of the same model on one prompt (its first row is used).
        stats: the model's corpus statistics.
        z_threshold: how many across-sequence standard deviations count as unusual.
        min_difference: and by at least this much weight.
        std_floor: spreads below this are taken as this (a sink's spread can be ~0).
    """
    if tuple(dw.sources) != tuple(stats.sources):
        raise ValueError("the prompt's depth weights and the corpus statistics come from different models")
    tokens = dw.mask[0]
    prompt = np.where(tokens[:, None, None], dw.per_token[0], 0.0).sum(0) / max(int(tokens.sum()), 1)
    corpus, spread = stats.alpha.seq_mean, stats.alpha.seq_std
    with np.errstate(invalid="ignore"):
        z = (prompt - corpus) / np.maximum(np.nan_to_num(spread), std_floor)
        unusual = (np.abs(z) >= z_threshold) & (np.abs(prompt - corpus) >= min_difference)
    return PromptVsCorpus(
        stats.sites, stats.sources, prompt, corpus, spread, z, unusual & ~np.isnan(z),
        stats.n_sequences, int(tokens.sum()), float(z_threshold), float(min_difference),
    )  # fmt: skip


@dataclass(frozen=True)
class CorpusDiff(ProbeResult):
    """b - a for two models of the same depth (S sites, L sublayers); NaN where labels differ."""

    sites: np.ndarray  # [S]
    sources: tuple[tuple[str, ...], ...]  # a's labels; a column is compared where b has the same label
    alpha: np.ndarray  # [S, Kmax] difference of the corpus-mean weights
    alpha_ci: np.ndarray  # [S, Kmax] half width of the difference's 95% interval
    alpha_differs: np.ndarray  # [S, Kmax] bool: |alpha| > alpha_ci
    input_rms: np.ndarray  # [S] difference of RMS(h_l), with _ci and _differs like alpha
    input_rms_ci: np.ndarray
    input_rms_differs: np.ndarray
    entropy: np.ndarray  # [S] difference of the routing entropy
    entropy_ci: np.ndarray
    entropy_differs: np.ndarray
    update_ratio: np.ndarray  # [L] difference of ||v_l|| / ||h_l||
    update_ratio_ci: np.ndarray
    update_ratio_differs: np.ndarray
    largest: tuple[dict, ...]  # the differences that the intervals support, largest |diff| / ci first
    notes: tuple[str, ...]


def _difference(a, b):
    diff = b.seq_mean - a.seq_mean
    ci = np.sqrt(a.ci_half**2 + b.ci_half**2)
    with np.errstate(invalid="ignore"):
        return diff, ci, np.abs(diff) > ci


def _aligned(a: CorpusStats, b: CorpusStats):
    """b's alpha Estimate arrays rearranged onto a's columns by label (NaN where b lacks a label)."""
    cols = np.full(a.alpha.mean.shape, -1)
    for row, labels in enumerate(a.sources):
        for k, label in enumerate(labels):
            cols[row, k] = b.sources[row].index(label) if label in b.sources[row] else -1
    rows = np.arange(len(a.sites))[:, None].repeat(cols.shape[1], 1)
    out = {}
    for name in ("seq_mean", "ci_half"):
        value = getattr(b.alpha, name)[rows, np.maximum(cols, 0)]
        out[name] = np.where(cols >= 0, value, np.nan)
    return type("Aligned", (), out)


def _largest(diffs: dict, a: CorpusStats) -> tuple[dict, ...]:
    rows = []
    for quantity, (diff, ci, differs) in diffs.items():
        for index in zip(*np.nonzero(differs), strict=True):
            site = int(index[0]) + 1
            source = a.sources[index[0]][index[1]] if len(index) == 2 else ""
            d, c = float(diff[index]), float(ci[index])
            row = {"quantity": quantity, "site": site, "source": source, "difference": d, "ci_half": c}
            rows.append(row | {"ratio": abs(d) / max(c, 1e-12)})
    return tuple(sorted(rows, key=lambda r: -r["ratio"])[:20])


def corpus_diff(a: CorpusStats, b: CorpusStats) -> CorpusDiff:
    """The difference b - a of two models' corpus statistics, with intervals deciding what differs.

    Raises:
        ValueError: the models have different depths (numbers of sites).
    """
    if a.n_sites != b.n_sites:
        raise ValueError(f"the models have different depths ({a.n_sites - 1} and {b.n_sites - 1} sublayers)")
    notes = []
    if a.corpus_digest != b.corpus_digest:
        notes.append("the two sweeps read different sequences (different tokenizers or corpora)")
    if "prenorm" in (a.residual, b.residual):
        notes.append("PreNorm has no routing (weight 1 per source): its weight differences are not routing")
    diffs = {
        "alpha": _difference(a.alpha, _aligned(a, b)),
        "input_rms": _difference(a.input_rms, b.input_rms),
        "entropy": _difference(a.entropy, b.entropy),
        "update_ratio": _difference(a.update_ratio, b.update_ratio),
    }
    fields = {}
    for name, (diff, ci, differs) in diffs.items():
        fields.update({name: diff, f"{name}_ci": ci, f"{name}_differs": differs})
    return CorpusDiff(a.sites, a.sources, **fields, largest=_largest(diffs, a), notes=tuple(notes))
