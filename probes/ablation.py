"""Ablations at one site, done through the model's mixer argument: no hooks, no in-place edits.

The shared model is never changed, so ablations may run concurrently from several threads. Modes
rewrite the site's weights w (AttnRes: alpha; PreNorm: 1 per source) before h_l = sum_k w_k v_k:

    zero_source  w_k = 0 for the chosen source (the others keep their weights; no renormalisation)
    uniform      w = 1/K for every source
    argmax       w = one-hot at the largest alpha (PreNorm: the source with the largest share of h_l)
    plain_sum    w = 1 for every source: the PreNorm rule (a no-op on a PreNorm model)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnres.sources import weighted_sum

from ._common import ProbeResult, expect_shape, last_positions, next_token_targets, resume, to_numpy
from .prompt import make_batch, token_strings

MODES = ("zero_source", "uniform", "argmax", "plain_sum")


@dataclass(frozen=True)
class AblationResult(ProbeResult):
    """Effect of one ablation on the prompt's loss, accuracy and final predictions (B prompts, k top)."""

    residual: str  # "prenorm" | "full" | "block"
    site: int  # ablated site l (1..L+1)
    mode: str  # one of MODES
    source: str | None  # label of the zeroed source (zero_source only)
    loss_before: float  # mean next-token cross-entropy over real targets (NaN if there are none)
    loss_after: float
    delta_loss: float  # after - before
    accuracy_before: float  # top-1 next-token accuracy over real targets
    accuracy_after: float
    delta_accuracy: float  # after - before
    positions: np.ndarray  # [B] int, each prompt's last real position
    top_ids_before: np.ndarray  # [B, k] int, most likely next tokens at that position
    top_probs_before: np.ndarray  # [B, k]
    top_ids_after: np.ndarray  # [B, k] int
    top_probs_after: np.ndarray  # [B, k]
    top_tokens_before: tuple[tuple[str, ...], ...]  # B x k display strings ("" without a tokenizer)
    top_tokens_after: tuple[tuple[str, ...], ...]

    def check(self) -> None:
        """Checks the top-k arrays against positions."""
        B, k = len(self.positions), self.top_ids_before.shape[-1]
        for name in ("top_ids_before", "top_probs_before", "top_ids_after", "top_probs_after"):
            expect_shape(name, getattr(self, name), (B, k))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")


def ablated_weights(mode: str, sources: Tensor, weights: Tensor | None, source: int | None) -> Tensor:
    """[B, T, K] the weights an ablation uses at its site (see the module docstring)."""
    K, B, T, _ = sources.shape
    base = weights if weights is not None else sources.new_ones(B, T, K)
    if mode == "zero_source":
        return base * (torch.arange(K, device=base.device) != source).to(base.dtype)
    if mode == "uniform":
        return torch.full_like(base, 1.0 / K)
    if mode == "plain_sum":
        return torch.ones_like(base)
    if weights is None:  # PreNorm argmax: the source with the largest share of h_l
        h = sources.sum(0).float()
        score = torch.einsum("kbtd,btd->btk", sources.float(), h)
    else:
        score = weights
    return torch.nn.functional.one_hot(score.argmax(-1), K).to(base.dtype)


def _resolve_source(model, site: int, mode: str, source) -> tuple[int | None, str | None]:
    """Checks the arguments; returns (index, label) of the source to zero, or (None, None)."""
    n_sites = model.config.n_sublayers + 1
    if not isinstance(site, int) or not 1 <= site <= n_sites:
        raise ValueError(f"site must be an integer 1..{n_sites}, got {site!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    labels = model.depth_source_labels(site)
    if mode != "zero_source":
        return None, None
    if isinstance(source, str):
        if source not in labels:
            raise ValueError(f"site {site} has no source {source!r}; its sources are {labels}")
        return labels.index(source), source
    if not isinstance(source, int) or not 0 <= source < len(labels):
        raise ValueError(f"zero_source needs a source index 0..{len(labels) - 1} or a label in {labels}")
    return source, labels[source]


def ablate(
    model, inputs, site: int, mode: str, source: int | str | None = None, top_k: int = 5
) -> AblationResult:
    """Runs the model with one site ablated and reports what changed.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device); never modified.
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).
        site: the site l = 1..L+1 to ablate.
        mode: "zero_source", "uniform", "argmax" or "plain_sum".
        source: for zero_source, the source's index in the site's labels or the label itself.
        top_k: how many next-token predictions to list.

    Returns:
        AblationResult.
    """
    index, label = _resolve_source(model, site, mode, source)

    def mixer(l: int, sources: Tensor, weights: Tensor | None) -> Tensor:
        if l != site:
            return weighted_sum(sources, weights)
        return weighted_sum(sources, ablated_weights(mode, sources, weights, index))

    batch = make_batch(model, inputs)
    with torch.no_grad():  # the ablated run shares the unablated one's v_1..v_{site-1} (depth is causal)
        run = model(batch.tokens, return_internals=True, mixer=lambda l, s, w: weighted_sum(s, w))
        it = run.internals
        before = run.logits
        after = model.readout(resume(model, site, it.embedding, it.sublayer_outputs, mixer))
    targets, pos = next_token_targets(batch), last_positions(batch)
    stats_before, stats_after = _scores(before, targets, pos, top_k), _scores(after, targets, pos, top_k)
    return AblationResult(
        model.config.residual,
        site,
        mode,
        label,
        stats_before[0],
        stats_after[0],
        stats_after[0] - stats_before[0],
        stats_before[1],
        stats_after[1],
        stats_after[1] - stats_before[1],
        to_numpy(pos),
        stats_before[2],
        stats_before[3],
        stats_after[2],
        stats_after[3],
        _token_table(model, stats_before[2]),
        _token_table(model, stats_after[2]),
    )


def _scores(logits: Tensor, targets: Tensor, pos: Tensor, k: int):
    """(loss, accuracy, top ids [B, k], top probs [B, k]) of one run."""
    real = targets >= 0
    if bool(real.any()):
        loss = float(torch.nn.functional.cross_entropy(logits[real].float(), targets[real]))
        accuracy = float((logits[real].argmax(-1) == targets[real]).float().mean())
    else:
        loss = accuracy = float("nan")
    probs = logits[torch.arange(len(pos), device=pos.device), pos].float().softmax(-1)
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return loss, accuracy, to_numpy(top.indices), to_numpy(top.values)


def _token_table(model, ids: np.ndarray) -> tuple[tuple[str, ...], ...]:
    return tuple(token_strings(getattr(model, "tokenizer", None), row) for row in ids)
