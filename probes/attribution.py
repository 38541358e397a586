"""Causal effect of each depth source, to set against its routing weight (Captum integrated gradients).

Every source k at every site l gets a scalar gate g that moves the value read along that route
between the source's mean over the prompt and the source itself: the site computes
h_l = sum_k alpha_k (mu_k + g_k (v_k - mu_k)) (PreNorm: alpha_k = 1), with alpha from the real
sources. Gates = 1 is the model itself; gates = 0 reads every source at its mean over the prompt's
real tokens up to the explained position (mean ablation). Integrated gradients from 0 to 1 of the
target token's log-probability split f(1) - f(0) over the gates (completeness), so a source with
large alpha but small attribution is routed to without mattering, and vice versa.

Why not gates that scale the sources to zero: every sublayer and the readout normalise their input,
so scaling every source by t changes nothing until the stream shrinks to about sqrt(eps). On the
shipped models f(t * 1) is flat to 3 decimals for t > 0.01 and all of f(1) - f(0) happens for
t in [1e-4, 1e-2]; the attribution then describes the network at an eps-sized stream and 32 steps
leave a completeness error larger than f(1) - f(0). With the mean baseline the integrand is smooth
(64 Gauss-Legendre steps: relative error under 1% on the shipped trio, see DEFAULT_IG_STEPS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnres.lab_limits import available_memory
from attnres.sources import running_block_sums, source_tensors

from ._common import ProbeResult, expect_shape, last_positions, pad_last, resume, to_numpy, trace
from .prompt import token_strings

# Gauss-Legendre steps by default. Relative completeness error |delta| / max(|f(1) - f(0)|, 0.1) on
# the shipped trio x 8 held-out prompts of 100-255 characters (benchmarks/results/ig_convergence.md):
# 32 steps up to 0.15 (6 of 24 pairs over 1%), 64 steps up to 6.0e-3, 128 steps up to 2.1e-5.
DEFAULT_IG_STEPS = 64
# attribution_estimates: Gauss-Legendre rules tried in turn until the relative completeness error is
# below CONVERGED (the Attribution page's threshold). The first, 2 steps, is the page's first estimate: on
# a GPT-2-small import (256 tokens) it costs about 5 forward passes on a 2-thread CPU (the trace, f(0),
# two gradient evaluations), each further step about 1.5 (benchmarks/realsize).
REFINEMENT_STEPS = (2, 4, 8, 16, 32, 64)
CONVERGED = 0.01

# How many gate settings (rows) one evaluation of the integrand takes: at most TOKENS_PER_EVALUATION
# rows x positions, and at most EVALUATION_BYTES by an estimate of the source stacks (each site stacks
# its K_l sources for every token and autograd keeps them: about BYTES_PER_SOURCE_VALUE * d_model *
# sum(K_l) bytes per token). On a 2-thread CPU the sample models did best at 4,096 tokens: Full,
# 32 steps, 256 characters: 5.1-7.1 s as one 8,192-token evaluation, 1.6-1.8 s in chunks of 4,096;
# Block, 64 steps: 2.0 s at 16 rows, 2.2-2.4 s at 47. The byte bound keeps a GPT-2-small import to
# a few rows of 256 tokens per evaluation instead of about 7 GiB; a quarter of the memory free bounds
# it too. On CUDA each evaluation costs launches rather than memory traffic, so both fixed bounds are
# 16x larger (not yet timed on a GPU).
TOKENS_PER_EVALUATION = 4096
EVALUATION_BYTES = 4 * 2**30
CUDA_FACTOR = 16
BYTES_PER_SOURCE_VALUE = 12  # fp32 stack + weighted copy + gradient


@dataclass(frozen=True)
class GateAttribution(ProbeResult):
    """Integrated-gradients attribution of one target token per prompt to every (site, source) gate."""

    residual: str  # "prenorm" | "full" | "block"
    sites: np.ndarray  # [S] int, l = 1..L+1
    sources: tuple[tuple[str, ...], ...]  # S label tuples (K_l each)
    positions: np.ndarray  # [B] int, the position whose next-token prediction is explained
    targets: np.ndarray  # [B] int, the token id whose log-probability is explained
    target_tokens: tuple[str, ...]  # B display strings of the targets ("" without a tokenizer)
    attribution: np.ndarray  # [B, S, Kmax] IG attribution per gate; NaN at absent sources
    weight: np.ndarray  # [B, S, Kmax] routing weight at that position (alpha; PreNorm 1)
    logprob_model: np.ndarray  # [B] f(1): target log-probability with every gate open
    logprob_baseline: np.ndarray  # [B] f(0): every route reads its source's prompt mean
    convergence_delta: np.ndarray  # [B] sum(attribution) - (f(1) - f(0)); near 0 when n_steps suffices
    n_steps: int  # integration steps used

    def relative_error(self) -> np.ndarray:
        """[B] |convergence_delta| / max(|f(1) - f(0)|, 0.1): how far from exact the integral is."""
        total = np.abs(self.logprob_model - self.logprob_baseline)
        return np.abs(self.convergence_delta) / np.maximum(total, 0.1)

    def check(self) -> None:
        """Checks per-prompt and per-gate shapes."""
        S, B = len(self.sites), len(self.positions)
        k_max = max(len(s) for s in self.sources)
        for name in ("attribution", "weight"):
            expect_shape(name, getattr(self, name), (B, S, k_max))
        for name in ("targets", "logprob_model", "logprob_baseline", "convergence_delta"):
            expect_shape(name, getattr(self, name), (B,))
        if len(self.target_tokens) != B:
            raise ValueError(f"{len(self.target_tokens)} target strings for {B} prompts")


class _GatedModel:
    """The gated function: f(gates, embedding, positions, targets, means) -> [N] target log-probs.

    Shapes: gates [N, G], embedding [N, T, d], positions [N], targets [N], means [N, G, d]; means
    holds each (site, source) route's baseline value mu.

    The run starts from the traced embedding v_0 (it does not depend on the gates) and reads the
    output only at the explained positions. ``on_rows(n)``, when set, is called before each
    evaluation of n rows (progress; it may raise to cancel).
    """

    def __init__(self, model, counts: list[int], on_rows=None):
        self.model = model
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
        self.on_rows = on_rows

    def mixer(self, gates: Tensor, means: Tensor):
        """The site mix sum_k w_k (mu_k + g_k (v_k - mu_k)) for gates [N, G] and means [N, G, d]."""

        def mix(site: int, sources: Tensor, weights: Tensor | None) -> Tensor:
            a, b = self.offsets[site - 1], self.offsets[site]
            g = gates[:, a:b].to(sources.dtype)  # [N, K]
            mu = means[:, a:b].to(sources.dtype)  # [N, K, d]
            if weights is None:  # PreNorm: every weight 1
                weights = g.new_ones(sources.shape[1], sources.shape[2], b - a)
            # sum_k w_k (mu_k + g_k (v_k - mu_k)), without a [K, N, T, d] temporary
            read = torch.einsum("btk,kbtd->btd", weights * g[:, None, :], sources)
            return read + torch.einsum("btk,bkd->btd", weights * (1 - g)[:, None, :], mu)

        return mix

    def logprob(self, h: Tensor, positions: Tensor, targets: Tensor) -> Tensor:
        """[N] log p(target) read from h_{L+1} [N, T, d] at each row's position."""
        rows = torch.arange(h.shape[0], device=h.device)
        return self.model.readout(h[rows, positions]).float().log_softmax(-1)[rows, targets]

    def __call__(self, gates: Tensor, embedding: Tensor, positions: Tensor, targets: Tensor, means: Tensor):
        if self.on_rows is not None:
            self.on_rows(gates.shape[0])
        h = resume(self.model, 1, embedding, [], self.mixer(gates, means), shared_keys=True)
        return self.logprob(h, positions, targets)


def _route_means(tr, positions: Tensor) -> Tensor:
    """[B, G, d] every (site, source) route's mean over the tokens up to the explained position.

    Real tokens only, at or before that position, in the gates' order (sites 1..L+1, sources in
    label order). The mean is linear, so each v_i is averaged once and every source (a block sum
    of v_i) is the same sum of the means: no site's [K_l, B, T, d] stack is built.
    """
    T = tr.batch.tokens.shape[1]
    upto = tr.batch.mask & (torch.arange(T, device=positions.device)[None, :] <= positions[:, None])
    w = upto.to(tr.embedding.dtype)
    w = (w / w.sum(1, keepdim=True))[:, None, :]  # [B, 1, T]

    embedding, outputs = torch.bmm(w, tr.embedding), [torch.bmm(w, v) for v in tr.sublayer_outputs]
    running = running_block_sums(tr.source_rule, outputs, embedding)
    means = [
        torch.cat(source_tensors(tr.source_rule, l, embedding, outputs, running), dim=1)
        for l in range(1, tr.n_sites + 1)
    ]  # K_l x [B, 1, d] -> [B, K_l, d]
    return torch.cat(means, dim=1).contiguous()


def gate_attribution(
    model,
    inputs,
    positions=None,
    targets=None,
    n_steps: int = DEFAULT_IG_STEPS,
    internal_batch_size: int | None = None,
) -> GateAttribution:
    """Integrated gradients of a target token's log-probability w.r.t. every depth-source gate.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).
        positions: [B] positions to explain (int or sequence); default each prompt's last real token.
        targets: [B] token ids to explain; default the model's top-1 prediction at that position.
        n_steps: integration steps (Gauss-Legendre); more steps, smaller convergence_delta.
        internal_batch_size: evaluate at most this many gate settings (rows) at once; default keeps
            each evaluation within ``TOKENS_PER_EVALUATION`` and ``EVALUATION_BYTES`` (16x on a GPU;
            at least one row per prompt).

    Returns:
        GateAttribution.
    """
    problem = _Problem(model, inputs, positions, targets)
    return problem.integrate(n_steps, internal_batch_size)


def attribution_estimates(
    model,
    inputs,
    positions=None,
    targets=None,
    steps: tuple[int, ...] = REFINEMENT_STEPS,
    tolerance: float = CONVERGED,
    internal_batch_size: int | None = None,
    on_progress=None,
):
    """Yields ever finer gate attributions until the completeness error is below ``tolerance``.

    Each estimate is ``gate_attribution`` at the next step count of ``steps`` (a fresh Gauss-Legendre
    rule each time); the trace and the route means are computed once. The first estimate costs
    ``steps[0]`` evaluations, so a page can show it early and refine it.

    Args:
        model: an ``attnres.Model``, as in ``gate_attribution``.
        inputs: the prompt(s), as in ``gate_attribution``.
        positions: the explained positions, as in ``gate_attribution``.
        targets: the explained tokens, as in ``gate_attribution``.
        internal_batch_size: rows per evaluation, as in ``gate_attribution``.
        steps: the step counts to try, in order.
        tolerance: stop after the first estimate whose ``relative_error()`` is below it for every
            prompt (see ``GateAttribution.relative_error``).
        on_progress: called as ``on_progress(done, total)`` in evaluated rows (gate settings, f(0)
            included) before each evaluation, ``total`` counting every level of ``steps``;
            an exception it raises stops the computation (cancellation).

    Yields:
        GateAttribution, one per level, the last one converged or at ``steps[-1]``.
    """
    problem = _Problem(model, inputs, positions, targets)
    B, done = problem.tokens.shape[0], [0]
    total = B * (1 + sum(steps))  # f(0) once, then each level's steps

    def count(rows: int) -> None:
        if on_progress is not None:
            on_progress(done[0], total)
        done[0] += rows

    problem.f.on_rows = count
    for n_steps in steps:
        estimate = problem.integrate(n_steps, internal_batch_size)
        yield estimate
        if (estimate.relative_error() < tolerance).all():
            return


class _Problem:
    """What every integral of one (model, prompt, positions, targets) shares.

    The trace, the route means, the explained positions and targets, and the gated function.
    """

    def __init__(self, model, inputs, positions, targets):
        self.tr, self.tokens, self.pos, self.tgt, self.counts, self.means = _explained(
            model, inputs, positions, targets
        )
        self.model = model
        self.embedding = self.tr.embedding[:, : int(self.pos.max()) + 1]  # later tokens cannot matter
        self.f = _GatedModel(model, self.counts)
        self._ends = None

    @torch.no_grad()
    def ends(self) -> tuple[Tensor, Tensor]:
        """(f(1), f(0)) [B] each, evaluated once.

        f(1), every gate open, is the model itself (read off the trace); f(0) is one evaluation of
        B rows.
        """
        if self._ends is None:
            B, G = self.tokens.shape[0], sum(self.counts)
            rows = torch.arange(B, device=self.tokens.device)
            full = self.tr.logits[rows, self.pos].float().log_softmax(-1)[rows, self.tgt]
            gates = torch.zeros(B, G, device=self.tokens.device)
            zero = self.f(gates, self.embedding, self.pos, self.tgt, self.means)
            self._ends = full, zero
        return self._ends

    def integrate(self, n_steps: int, internal_batch_size: int | None = None) -> GateAttribution:
        """Captum integrated gradients with n_steps Gauss-Legendre steps."""
        from captum.attr import IntegratedGradients  # here: importing captum takes ~1.5 s (IPython, ...)

        tr, pos, tgt, means, f = self.tr, self.pos, self.tgt, self.means, self.f
        B = self.tokens.shape[0]
        if internal_batch_size is None:
            internal_batch_size = _rows_per_evaluation(self.model, self.counts, self.embedding[..., 0])
        ones = torch.ones(B, sum(self.counts), device=self.tokens.device)
        attr = IntegratedGradients(f).attribute(
            ones,
            baselines=torch.zeros_like(ones),
            additional_forward_args=(self.embedding, pos, tgt, means),
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
        )
        full, zero = self.ends()
        delta = attr.detach().sum(1) - (full - zero)  # completeness, as captum's convergence delta
        rows = torch.arange(B, device=pos.device)
        split = list(torch.split(attr.detach(), self.counts, dim=1))  # S x [B, K_l]
        weight = pad_last([tr.weights(l)[rows, pos].float() for l in range(1, tr.n_sites + 1)])
        return GateAttribution(
            residual=tr.residual,
            sites=np.arange(1, tr.n_sites + 1),
            sources=tuple(tr.labels),
            positions=to_numpy(pos),
            targets=to_numpy(tgt),
            target_tokens=token_strings(getattr(self.model, "tokenizer", None), to_numpy(tgt)),
            attribution=to_numpy(pad_last(split)),
            weight=to_numpy(weight),
            logprob_model=to_numpy(full),
            logprob_baseline=to_numpy(zero),
            convergence_delta=to_numpy(delta),
            n_steps=int(n_steps),
        )


@dataclass(frozen=True)
class RouteAblation(ProbeResult):
    """The target's log-probability when one route of one site reads its source's prompt mean.

    Gate 0 for that route alone, every other gate 1: the occlusion counterpart of GateAttribution.
    """

    residual: str
    site: int  # the consuming site l
    sources: tuple[str, ...]  # K labels of its sources
    positions: np.ndarray  # [B] int
    targets: np.ndarray  # [B] int
    logprob_model: np.ndarray  # [B] every gate open
    logprob_ablated: np.ndarray  # [B, K] route k alone at its mean
    effect: np.ndarray  # [B, K] logprob_model - logprob_ablated: > 0 where the route's value helps

    def check(self) -> None:
        """Checks per-prompt and per-route shapes."""
        B, K = len(self.positions), len(self.sources)
        for name in ("logprob_ablated", "effect"):
            expect_shape(name, getattr(self, name), (B, K))
        expect_shape("logprob_model", self.logprob_model, (B,))


@torch.no_grad()
def route_ablation(model, inputs, site: int, positions=None, targets=None) -> RouteAblation:
    """Mean-ablates each route of one site in turn (the same gates and baseline as gate_attribution).

    Sites before ``site`` see every gate open in every setting, so they run once (depth is causal)
    and only sites site..L+1 run per setting.

    Args:
        model: an ``attnres.Model``.
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).
        site: the consuming site l = 1..L+1.
        positions: as in ``gate_attribution`` (default: each prompt's last real token).
        targets: as in ``gate_attribution`` (default: the top-1 prediction there).

    Returns:
        RouteAblation.
    """
    n_sites = model.config.n_sublayers + 1
    if not isinstance(site, int) or not 1 <= site <= n_sites:
        raise ValueError(f"site must be an integer 1..{n_sites}, got {site!r}")
    p = _Problem(model, inputs, positions, targets)
    B, K, first, G = p.tokens.shape[0], p.counts[site - 1], sum(p.counts[: site - 1]), sum(p.counts)
    gates = torch.ones(K + 1, B, G, device=p.tokens.device)  # row 0: the model itself
    for k in range(K):
        gates[k + 1, :, first + k] = 0.0
    prefix = resume(model, 1, p.embedding, [], p.f.mixer(gates[0], p.means), shared_keys=True, stop=site)
    out = []
    step = max(1, _rows_per_evaluation(model, p.counts, p.embedding[..., 0]) // B)  # settings at once
    for a in range(0, K + 1, step):
        g = gates[a : a + step].reshape(-1, G)
        n = g.shape[0] // B
        mixer = p.f.mixer(g, p.means.repeat(n, 1, 1))
        h = resume(model, site, p.embedding.repeat(n, 1, 1), [v.repeat(n, 1, 1) for v in prefix], mixer,
                   shared_keys=True)  # fmt: skip
        out.append(p.f.logprob(h, p.pos.repeat(n), p.tgt.repeat(n)).view(n, B))
    logprob = torch.cat(out)  # [K + 1, B]
    return RouteAblation(
        residual=p.tr.residual,
        site=site,
        sources=tuple(p.tr.labels[site - 1]),
        positions=to_numpy(p.pos),
        targets=to_numpy(p.tgt),
        logprob_model=to_numpy(logprob[0]),
        logprob_ablated=to_numpy(logprob[1:].T),
        effect=to_numpy((logprob[0][None] - logprob[1:]).T),
    )


def _explained(model, inputs, positions, targets):
    """(trace, tokens, positions [B], targets [B], sources per site, route means [B, G, d])."""
    tr = trace(model, inputs)
    tokens = tr.batch.tokens
    pos = _per_prompt(positions, last_positions(tr.batch), tokens.device)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    tgt = _per_prompt(targets, tr.logits[rows, pos].argmax(-1), tokens.device)
    counts = [len(labels) for labels in tr.labels]
    return tr, tokens, pos, tgt, counts, _route_means(tr, pos)


def row_bytes(model, n_tokens: int) -> int:
    """Estimated bytes one gate setting (row) of n_tokens keeps for its backward.

    Every site's stack of its sources (BYTES_PER_SOURCE_VALUE per value), the bulk of an
    attribution's memory.
    """
    counts = [len(model.depth_source_labels(l)) for l in range(1, model.config.n_sublayers + 2)]
    return BYTES_PER_SOURCE_VALUE * model.config.d_model * sum(counts) * n_tokens


def memory_refusal(model, n_tokens: int, free_bytes: int) -> str | None:
    """A sentence saying why an attribution over n_tokens should not start, or None when it fits.

    One gate setting's internals (``row_bytes``) must stay within half the free memory.
    """
    need = row_bytes(model, n_tokens)
    if need <= free_bytes / 2:
        return None
    return (
        f"integrated gradients over {n_tokens} tokens need about {need / 2**30:.1f} GiB for one step and "
        f"{free_bytes / 2**30:.1f} GiB are free, so they were not run; an earlier position or a shorter "
        "prompt needs less."
    )


def _rows_per_evaluation(model, counts: list[int], tokens: Tensor, free_bytes: int | None = None) -> int:
    """Gate settings per evaluation within the bounds: a multiple of the B prompts, at least B.

    The bounds are EVALUATION_BYTES and a quarter of ``free_bytes`` (default the memory free on the
    tokens' device).
    """
    B, T = tokens.shape
    scale = CUDA_FACTOR if tokens.is_cuda else 1
    per_token = BYTES_PER_SOURCE_VALUE * model.config.d_model * sum(counts)
    free = available_memory(tokens.device) if free_bytes is None else free_bytes
    fit = min(scale * TOKENS_PER_EVALUATION, min(scale * EVALUATION_BYTES, free // 4) // per_token)
    return max(1, fit // (B * T)) * B


def _per_prompt(value, default: Tensor, device) -> Tensor:
    """[B] long tensor from None (default), an int or a sequence."""
    if value is None:
        return default.long()
    out = torch.as_tensor(value, dtype=torch.long, device=device).reshape(-1)
    return out.expand(default.shape[0]).clone() if out.numel() == 1 else out
