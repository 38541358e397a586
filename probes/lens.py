"""Logit lens: the model's own readout (final norm + head) applied to every h_l and every source v_i.

At site L+1 the lens is the model's output exactly. KL is KL(p_final || p_lens) in nats, the rank of
the target is the number of tokens with a strictly higher logit (0 = top-1); the target at a position
is the prompt's next token (-1, rank -1 and NaN where there is none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._common import ProbeResult, expect_shape, mask_tokens, next_token_targets, site_kinds, to_numpy, trace
from .prompt import Batch

STATS = ("top_ids", "top_probs", "entropy", "kl_to_final", "target_rank", "target_logprob")


@dataclass(frozen=True)
class LogitLens(ProbeResult):
    """Lens statistics at every site (S = L+1: h_1..h_{L+1}) and source (L+1: v_0..v_L)."""

    residual: str  # "prenorm" | "full" | "block"
    sites: np.ndarray  # [S] int, l = 1..L+1
    kinds: tuple[str, ...]  # S: "attn" | "mlp" | "readout"
    mask: np.ndarray  # [B, T] bool, True at real tokens
    targets: np.ndarray  # [B, T] int, next token id; -1 where there is none
    top_ids: np.ndarray  # [B, T, S, k] int, most likely tokens read from h_l
    top_probs: np.ndarray  # [B, T, S, k]
    entropy: np.ndarray  # [B, T, S] nats; NaN at padded positions
    kl_to_final: np.ndarray  # [B, T, S] KL(p_final || p_l); exactly 0 at site L+1
    target_rank: np.ndarray  # [B, T, S] int, -1 where there is no target
    target_logprob: np.ndarray  # [B, T, S]; NaN where there is no target
    source_top_ids: np.ndarray  # [B, T, L+1, k] int, the same read from v_0..v_L
    source_top_probs: np.ndarray  # [B, T, L+1, k]
    source_entropy: np.ndarray  # [B, T, L+1]
    source_kl_to_final: np.ndarray  # [B, T, L+1]
    source_target_rank: np.ndarray  # [B, T, L+1] int
    source_target_logprob: np.ndarray  # [B, T, L+1]
    entropy_mean: np.ndarray  # [S] means over real tokens (target stats: over real targets)
    kl_mean: np.ndarray  # [S]
    target_rank_mean: np.ndarray  # [S]
    target_logprob_mean: np.ndarray  # [S]

    def check(self) -> None:
        """Checks every shape against mask, sites and top_ids."""
        (B, T), S, k = self.mask.shape, len(self.sites), self.top_ids.shape[-1]
        expect_shape("targets", self.targets, (B, T))
        for prefix in ("", "source_"):
            expect_shape(prefix + "top_ids", getattr(self, prefix + "top_ids"), (B, T, S, k))
            expect_shape(prefix + "top_probs", getattr(self, prefix + "top_probs"), (B, T, S, k))
            for name in ("entropy", "kl_to_final", "target_rank", "target_logprob"):
                expect_shape(prefix + name, getattr(self, prefix + name), (B, T, S))
        for name in ("entropy_mean", "kl_mean", "target_rank_mean", "target_logprob_mean"):
            expect_shape(name, getattr(self, name), (S,))


def lens_stats(model, h: Tensor, final_logprobs: Tensor, targets: Tensor, k: int) -> dict[str, Tensor]:
    """Lens statistics of one stream state h [B, T, d] (see STATS), each [B, T] or [B, T, k]."""
    logprobs = model.readout(h).float().log_softmax(-1)  # [B, T, vocab]
    probs = logprobs.exp()
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    safe = targets.clamp_min(0).unsqueeze(-1)
    target_logprob = logprobs.gather(-1, safe).squeeze(-1)
    rank = (logprobs > target_logprob.unsqueeze(-1)).sum(-1)
    has = targets >= 0
    return {
        "top_ids": top.indices,
        "top_probs": top.values,
        "entropy": -(probs * logprobs).sum(-1),
        "kl_to_final": (final_logprobs.exp() * (final_logprobs - logprobs)).sum(-1),
        "target_rank": torch.where(has, rank, torch.full_like(rank, -1)),
        "target_logprob": torch.where(has, target_logprob, torch.full_like(target_logprob, float("nan"))),
    }


def _stack(stats: list[dict[str, Tensor]], batch: Batch) -> dict[str, np.ndarray]:
    """Stacks per-site stats along a new axis 2 and masks padded positions."""
    out = {}
    for name in STATS:
        value = torch.stack([s[name] for s in stats], dim=2)
        if value.is_floating_point():
            value = mask_tokens(value, batch.mask)
        out[name] = to_numpy(value)
    return out


@torch.no_grad()
def logit_lens(model, inputs, top_k: int = 5) -> LogitLens:
    """Reads next-token predictions off every layer input and every source with the model's readout.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).
        top_k: how many most likely tokens to keep per position.

    Returns:
        LogitLens.
    """
    tr = trace(model, inputs)
    final = tr.logits.float().log_softmax(-1)
    targets = next_token_targets(tr.batch)
    sites = _stack([lens_stats(model, h, final, targets, top_k) for h in tr.layer_inputs], tr.batch)
    sources = [tr.embedding, *tr.sublayer_outputs]
    per_source = _stack([lens_stats(model, v, final, targets, top_k) for v in sources], tr.batch)
    real, has = to_numpy(tr.batch.mask), to_numpy(targets) >= 0
    rank = sites["target_rank"].astype(np.float64)
    return LogitLens(
        residual=tr.residual,
        sites=np.arange(1, tr.n_sites + 1),
        kinds=site_kinds(tr.n_sites),
        mask=real,
        targets=to_numpy(targets),
        **sites,
        **{"source_" + name: v for name, v in per_source.items()},
        entropy_mean=sites["entropy"][real].mean(0),
        kl_mean=sites["kl_to_final"][real].mean(0),
        target_rank_mean=rank[has].mean(0) if has.any() else np.full(tr.n_sites, np.nan),
        target_logprob_mean=(
            sites["target_logprob"][has].mean(0) if has.any() else np.full(tr.n_sites, np.nan)
        ),
    )
