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

from ._common import ProbeResult, expect_shape, next_token_targets, site_kinds, to_numpy, trace
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
        n_read = self.source_entropy.shape[-1]  # S, or 0 when the sources were not read
        if n_read not in (S, 0):
            raise ValueError(f"the source fields cover {n_read} sources, expected {S} or 0")
        for prefix, n in (("", S), ("source_", n_read)):
            expect_shape(prefix + "top_ids", getattr(self, prefix + "top_ids"), (B, T, n, k))
            expect_shape(prefix + "top_probs", getattr(self, prefix + "top_probs"), (B, T, n, k))
            for name in ("entropy", "kl_to_final", "target_rank", "target_logprob"):
                expect_shape(prefix + name, getattr(self, prefix + name), (B, T, n))
        for name in ("entropy_mean", "kl_mean", "target_rank_mean", "target_logprob_mean"):
            expect_shape(name, getattr(self, name), (S,))


# Rows (site x position) whose logits one chunk holds: at most CHUNK_BYTES of float32 temporaries
# (the logits, their log-softmax and probabilities, and one product), so a 50k-token vocabulary never
# needs a whole [sites, T, vocab] tensor.
CHUNK_BYTES = 128 * 2**20
TEMPORARIES = 4
MAX_CHUNK_ROWS = 8192


def chunk_rows(vocab: int) -> int:
    """Rows of logits per chunk so that TEMPORARIES float32 copies fit in CHUNK_BYTES."""
    return int(max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (TEMPORARIES * 4 * vocab))))


def _row_stats(logits: Tensor, final_logprobs: Tensor, targets: Tensor, k: int) -> dict[str, Tensor]:
    """STATS of rows of logits [n, vocab] against the output's log-probabilities [n, vocab]."""
    logprobs = logits.float().log_softmax(-1)
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


def lens_stats(model, h: Tensor, final_logprobs: Tensor, targets: Tensor, k: int) -> dict[str, Tensor]:
    """Lens statistics of one stream state h [B, T, d] (see STATS), each [B, T] or [B, T, k]."""
    B, T = h.shape[:2]
    out = _row_stats(model.readout(h).reshape(B * T, -1), final_logprobs.reshape(B * T, -1),
                     targets.reshape(-1), k)  # fmt: skip
    return {name: v.reshape(B, T, *v.shape[1:]) for name, v in out.items()}


def stacked_stats(model, states: list[Tensor], reference: int, targets: Tensor, positions: Tensor, k: int,
                  rows: int | None = None, on_chunk=None) -> dict[str, Tensor]:  # fmt: skip
    """STATS of several stream states [B, T, d] at the chosen (prompt, position) pairs, in chunks.

    Args:
        model: the attnres.Model whose readout is used.
        states: S states, each [B, T, d]; ``states[reference]`` is h_{L+1}, whose reading is the
            model's output and the KL reference (so its own KL is exactly 0).
        reference: index of h_{L+1} in states.
        targets: [B, T] next-token ids, -1 where there is none.
        positions: [P, 2] (prompt, position) pairs to read.
        k: top-k size.
        rows: logits rows per chunk (default ``chunk_rows(vocab)``); a chunk holds every state at
            ``max(1, rows // S)`` positions.
        on_chunk: called as ``on_chunk(done, total)`` positions after each chunk (progress, cancel).

    Returns:
        name -> [S, P] or [S, P, k]. The final norm runs once per state; the head and the statistics
        run chunk by chunk, never on all positions at once.
    """
    b, t = positions[:, 0], positions[:, 1]
    normed = torch.stack([model.final_norm(h[b, t]) for h in states], dim=1)  # [P, S, d]
    P, S = normed.shape[:2]
    step = max(1, (rows or chunk_rows(model.lm_head.out_features)) // S)
    parts = []
    for a in range(0, P, step):
        logits = model.lm_head(normed[a : a + step])  # [c, S, vocab]
        final = logits[:, reference].float().log_softmax(-1)[:, None].expand_as(logits)
        tgt = targets[b[a : a + step], t[a : a + step]][:, None].expand(logits.shape[:2])
        parts.append(_row_stats(logits.flatten(0, 1), final.flatten(0, 1), tgt.flatten(), k))
        parts[-1] = {name: v.reshape(-1, S, *v.shape[1:]) for name, v in parts[-1].items()}
        if on_chunk is not None:
            on_chunk(min(a + step, P), P)
    return {name: torch.cat([p[name] for p in parts]).transpose(0, 1) for name in STATS}


def _scatter(stats: dict[str, Tensor], positions: Tensor, B: int, T: int) -> dict[str, np.ndarray]:
    """[S, P(, k)] statistics -> [B, T, S(, k)] arrays; NaN (floats) or -1 (ids, ranks) elsewhere."""
    out = {}
    for name, value in stats.items():
        fill = float("nan") if value.is_floating_point() else -1
        full = value.new_full((B, T, *value.shape[:1], *value.shape[2:]), fill)
        full[positions[:, 0], positions[:, 1]] = value.transpose(0, 1)
        out[name] = to_numpy(full)
    return out


def _read_positions(batch: Batch, positions) -> Tensor:
    """[P, 2] (prompt, position) pairs: every real token, or the given positions of every prompt
    (negative positions count from each prompt's last real token).
    """
    real = batch.mask.clone()
    if positions is not None:
        T, lengths = batch.mask.shape[1], batch.mask.sum(1)
        wanted = torch.zeros_like(real)
        for p in np.atleast_1d(np.asarray(positions, dtype=np.int64)).tolist():
            at = lengths + p if p < 0 else torch.full_like(lengths, p)
            ok = (at >= 0) & (at < T)
            wanted[torch.nonzero(ok).flatten(), at[ok]] = True
        real &= wanted
    return torch.nonzero(real)


@torch.no_grad()
def logit_lens(
    model, inputs, top_k: int = 5, positions=None, sources: bool = True, on_chunk=None
) -> LogitLens:
    """Reads next-token predictions off every layer input and every source with the model's readout.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch, token ids or a Trace (see ``make_batch``).
        top_k: how many most likely tokens to keep per position.
        positions: positions to read (int or sequence; negative counts from each prompt's last real
            token); default every real token. Elsewhere statistics are NaN and ids/ranks -1.
        sources: also read the sources v_0..v_L; False leaves the ``source_`` fields empty
            ([B, T, 0(, k)]) and halves the work.
        on_chunk: called as ``on_chunk(done, total)`` after each chunk of rows (see ``stacked_stats``).

    Returns:
        LogitLens.
    """
    tr = trace(model, inputs)
    targets = next_token_targets(tr.batch)
    at = _read_positions(tr.batch, positions)
    states = list(tr.layer_inputs) + ([tr.embedding, *tr.sublayer_outputs] if sources else [])
    B, T = tr.batch.tokens.shape
    stats = stacked_stats(model, states, tr.n_sites - 1, targets, at, top_k, on_chunk=on_chunk)
    n = tr.n_sites
    sites = _scatter({name: v[:n] for name, v in stats.items()}, at, B, T)
    per_source = _scatter({name: v[n:] for name, v in stats.items()}, at, B, T)
    real, has = to_numpy(tr.batch.mask), to_numpy(targets) >= 0
    read = np.zeros_like(real)
    read[tuple(to_numpy(at).T)] = True
    real, has = real & read, has & read
    rank = sites["target_rank"].astype(np.float64)
    return LogitLens(
        residual=tr.residual,
        sites=np.arange(1, n + 1),
        kinds=site_kinds(n),
        mask=to_numpy(tr.batch.mask),
        targets=to_numpy(targets),
        **sites,
        **{"source_" + name: v for name, v in per_source.items()},
        entropy_mean=sites["entropy"][real].mean(0) if real.any() else np.full(n, np.nan),
        kl_mean=sites["kl_to_final"][real].mean(0) if real.any() else np.full(n, np.nan),
        target_rank_mean=rank[has].mean(0) if has.any() else np.full(n, np.nan),
        target_logprob_mean=(sites["target_logprob"][has].mean(0) if has.any() else np.full(n, np.nan)),
    )
