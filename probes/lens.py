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


# Rows (state x position) whose logits one chunk holds: TEMPORARIES float32 [rows, vocab] buffers (the
# logits, reused as scratch once read, their log-softmax and probabilities), reused from chunk to chunk,
# at most CHUNK_BYTES and a quarter of the memory free, so a 50k-token vocabulary never needs a whole
# [states, T, vocab] tensor. Fresh buffers per chunk would cost a page fault per 4 KiB written.
CHUNK_BYTES = 256 * 2**20
TEMPORARIES = 3
MAX_CHUNK_ROWS = 8192
# A lens whose head would cost more than QUICK_MACS multiply-adds (sites x positions x d_model x vocab)
# is read in two steps: first FIRST_POSITIONS positions (see first_positions), then the rest. On a
# GPT-2-small import (25 sites, 50k tokens, 256 positions: 247e9) the first 16 positions cost about
# one forward pass on a 2-thread CPU besides the trace, every position about 9 (benchmarks/realsize).
QUICK_MACS = 8e9
FIRST_POSITIONS = 16


def first_positions(
    model, n_tokens: int, position: int = -1, count: int = FIRST_POSITIONS
) -> list[int] | None:
    """The positions a first, quick lens of ``n_tokens`` reads, or None when all at once is quick.

    Quick means within QUICK_MACS. The positions are ``position`` (negative counts from the end)
    and the last ``count - 1`` others, in order.

    Raises:
        ValueError: when ``position`` is not one of the n_tokens.
    """
    at = position + n_tokens if position < 0 else position
    if not 0 <= at < n_tokens:
        raise ValueError(f"position must be within the {n_tokens} tokens, got {position}")
    sites, (vocab, d) = model.config.n_sublayers + 1, model.lm_head.weight.shape
    if n_tokens <= count or sites * n_tokens * d * vocab <= QUICK_MACS:
        return None
    tail = [t for t in range(n_tokens - 1, -1, -1) if t != at][: count - 1]
    return sorted([at, *tail])


def chunk_rows(vocab: int, free_bytes: int | None = None) -> int:
    """Rows of logits per chunk so that TEMPORARIES float32 copies fit in CHUNK_BYTES.

    They also fit in a quarter of ``free_bytes`` when given.
    """
    budget = CHUNK_BYTES if free_bytes is None else min(CHUNK_BYTES, free_bytes // 4)
    return int(max(1, min(MAX_CHUNK_ROWS, budget // (TEMPORARIES * 4 * vocab))))


class _Scratch:
    """Float buffers reused from chunk to chunk, one per name, grown when a chunk needs more."""

    def __init__(self):
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor, dtype=torch.float32) -> Tensor:
        """A [shape] view of the buffer ``name`` (uninitialised), on ``like``'s device."""
        n, buf = int(np.prod(shape)), self.buffers.get(name)
        if buf is None or buf.numel() < n or buf.device != like.device or buf.dtype != dtype:
            buf = self.buffers[name] = torch.empty(n, dtype=dtype, device=like.device)
        return buf[:n].view(shape)


def _row_stats(logits: Tensor, final_logprobs: Tensor | int, targets: Tensor, k: int,
               scratch: _Scratch | None = None) -> dict[str, Tensor]:  # fmt: skip
    """STATS of c positions x S states of logits [c, S, vocab] (overwritten: used as scratch).

    ``final_logprobs`` is the output's log-probabilities [c, vocab], or the index of the state whose
    reading they are (its KL is then exactly 0); targets [c]. Each statistic is a pass or two over
    the rows' log-probabilities (and probabilities) into reused buffers, no [c, S, vocab] tensor
    allocated. Returns name -> [c, S] or [c, S, k].
    """
    scratch = scratch or _Scratch()
    c, S, V = logits.shape
    work = logits if logits.dtype == torch.float32 else logits.float()
    logprobs = torch.log_softmax(work, -1, out=scratch.get("logprobs", (c, S, V), work))
    probs = torch.exp(logprobs, out=scratch.get("probs", (c, S, V), work))
    final = logprobs[:, final_logprobs] if isinstance(final_logprobs, int) else final_logprobs.float()
    top = probs.topk(min(k, V), dim=-1)
    entropy = -torch.mul(probs, logprobs, out=work).sum(-1)
    # KL(p_final || p) = sum_v p_final (log p_final - log p), in work
    kl = torch.sub(final[:, None], logprobs, out=work).mul_(final.exp()[:, None]).sum(-1)
    target_logprob = logprobs.gather(-1, targets.clamp_min(0)[:, None, None].expand(c, S, 1)).squeeze(-1)
    # the rank: how many log-probabilities exceed the target's, counted as 1.0s (exact below 2**24)
    rank = torch.gt(logprobs, target_logprob[..., None], out=work).sum(-1).long()
    has = (targets >= 0)[:, None].expand(c, S)
    return {
        "top_ids": top.indices,
        "top_probs": top.values,
        "entropy": entropy,
        "kl_to_final": kl,
        "target_rank": torch.where(has, rank, torch.full_like(rank, -1)),
        "target_logprob": torch.where(has, target_logprob, torch.full_like(target_logprob, float("nan"))),
    }


def lens_stats(model, h: Tensor, final_logprobs: Tensor, targets: Tensor, k: int) -> dict[str, Tensor]:
    """Lens statistics of one stream state h [B, T, d] (see STATS), each [B, T] or [B, T, k]."""
    B, T = h.shape[:2]
    logits = model.readout(h).reshape(B * T, 1, -1)
    out = _row_stats(logits, final_logprobs.reshape(B * T, -1), targets.reshape(-1), k)
    return {name: v.reshape(B, T, *v.shape[2:]) for name, v in out.items()}


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
        rows: logits rows per chunk (default ``chunk_rows(vocab, free memory)``); a chunk holds every
            state at ``max(1, rows // S)`` positions.
        on_chunk: called as ``on_chunk(done, total)`` positions after each chunk (progress, cancel).

    Returns:
        name -> [S, P] or [S, P, k]. The final norm runs once per state; the head and the statistics
        run chunk by chunk into buffers reused between chunks, never on all positions at once.
    """
    from attnres.lab_limits import available_memory

    b, t = positions[:, 0], positions[:, 1]
    normed = torch.stack([model.final_norm(h[b, t]) for h in states], dim=1)  # [P, S, d]
    (P, S, d), weight = normed.shape, model.lm_head.weight
    V = weight.shape[0]
    step = max(1, (rows or chunk_rows(V, available_memory(normed.device))) // S)
    scratch, parts = _Scratch(), []
    for a in range(0, P, step):
        x = normed[a : a + step].reshape(-1, d).to(weight.dtype)
        logits = torch.mm(x, weight.t(), out=scratch.get("logits", (x.shape[0], V), x, weight.dtype))
        parts.append(_row_stats(logits.view(-1, S, V), reference, targets[b[a : a + step], t[a : a + step]],
                                k, scratch))  # fmt: skip
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
    """[P, 2] (prompt, position) pairs: every real token, or the given positions of every prompt.

    Negative positions count from each prompt's last real token.
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
    read = np.zeros(tuple(tr.batch.mask.shape), dtype=bool)
    read[tuple(to_numpy(at).T)] = True
    return LogitLens(
        residual=tr.residual,
        sites=np.arange(1, n + 1),
        kinds=site_kinds(n),
        mask=to_numpy(tr.batch.mask),
        targets=to_numpy(targets),
        **sites,
        **{"source_" + name: v for name, v in per_source.items()},
        **_means(sites, to_numpy(tr.batch.mask) & read, (to_numpy(targets) >= 0) & read),
    )


def _means(sites: dict[str, np.ndarray], real: np.ndarray, has: np.ndarray) -> dict[str, np.ndarray]:
    """The [S] means of the site statistics over the read real tokens (``real`` [B, T]).

    The target statistics are averaged over the read real targets (``has``); NaN where there is none.
    """
    n = sites["entropy"].shape[-1]

    def mean(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        return values[where].mean(0) if where.any() else np.full(n, np.nan)

    return {
        "entropy_mean": mean(sites["entropy"], real),
        "kl_mean": mean(sites["kl_to_final"], real),
        "target_rank_mean": mean(sites["target_rank"].astype(np.float64), has),
        "target_logprob_mean": mean(sites["target_logprob"], has),
    }


def read_positions(lens: LogitLens) -> np.ndarray:
    """[B, T] bool: the positions a lens read (``logit_lens(..., positions=...)``).

    Its ids are -1 elsewhere.
    """
    return lens.top_ids[:, :, 0, 0] >= 0


def merge_lenses(first: LogitLens, rest: LogitLens) -> LogitLens:
    """One lens of the same model and prompt from two read at different positions.

    ``rest`` where it read, ``first`` elsewhere, the means over every position either read
    (``logit_lens`` at the union of their positions gives the same numbers).

    Raises:
        ValueError: when the two lenses do not cover the same prompt, sites and sources.
    """
    same = first.mask.shape == rest.mask.shape and (first.mask == rest.mask).all()
    if (
        not same
        or first.top_ids.shape != rest.top_ids.shape
        or (first.source_top_ids.shape != rest.source_top_ids.shape)
    ):
        raise ValueError("the two lenses cover different prompts, sites, sources or top-k sizes")
    theirs = read_positions(rest)
    merged = {}
    for name in STATS:
        for prefix in ("", "source_"):
            a, b = getattr(first, prefix + name), getattr(rest, prefix + name)
            merged[prefix + name] = np.where(theirs.reshape(theirs.shape + (1,) * (a.ndim - 2)), b, a)
    read = read_positions(first) | theirs
    return LogitLens(
        residual=first.residual,
        sites=first.sites,
        kinds=first.kinds,
        mask=first.mask,
        targets=first.targets,
        **merged,
        **_means(merged, first.mask & read, (first.targets >= 0) & read),
    )
