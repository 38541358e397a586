"""Causal effect of each depth source, to set against its routing weight (Captum integrated gradients).

Every source k at every site l gets a scalar gate g: the site computes h_l = sum_k alpha_k g_k v_k
(PreNorm: h_l = sum_k g_k v_k). Gates = 1 is the model itself. Integrated gradients from gates = 0
to gates = 1 of the target token's log-probability split f(1) - f(0) over the gates (completeness),
so a source with large alpha but small attribution is routed to without mattering, and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import Tensor

from ._common import ProbeResult, expect_shape, last_positions, pad_last, to_numpy, trace


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
    logprob_baseline: np.ndarray  # [B] f(0): with every gate closed
    convergence_delta: np.ndarray  # [B] sum(attribution) - (f(1) - f(0)); near 0 when n_steps suffices
    n_steps: int  # integration steps used

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
    """f(gates [N, G], tokens [N, T], positions [N], targets [N]) -> [N] target log-probabilities."""

    def __init__(self, model, counts: list[int]):
        self.model = model
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()

    def __call__(self, gates: Tensor, tokens: Tensor, positions: Tensor, targets: Tensor) -> Tensor:
        def mixer(site: int, sources: Tensor, weights: Tensor | None) -> Tensor:
            g = gates[:, self.offsets[site - 1] : self.offsets[site]].to(sources.dtype)  # [N, K]
            if weights is None:
                return torch.einsum("bk,kbtd->btd", g, sources)
            return torch.einsum("btk,kbtd->btd", weights * g[:, None, :], sources)

        logits = self.model(tokens, mixer=mixer).logits  # [N, T, vocab]
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        return logits[rows, positions].float().log_softmax(-1)[rows, targets]


def gate_attribution(
    model, inputs, positions=None, targets=None, n_steps: int = 32, internal_batch_size: int | None = None
) -> GateAttribution:
    """Integrated gradients of a target token's log-probability w.r.t. every depth-source gate.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).
        positions: [B] positions to explain (int or sequence); default each prompt's last real token.
        targets: [B] token ids to explain; default the model's top-1 prediction at that position.
        n_steps: integration steps (Gauss-Legendre); more steps, smaller convergence_delta.
        internal_batch_size: evaluate at most this many gate settings at once (bounds memory).

    Returns:
        GateAttribution.
    """
    tr = trace(model, inputs)
    tokens, B = tr.batch.tokens, tr.batch.tokens.shape[0]
    pos = _per_prompt(positions, last_positions(tr.batch), tokens.device)
    rows = torch.arange(B, device=tokens.device)
    tgt = _per_prompt(targets, tr.logits[rows, pos].argmax(-1), tokens.device)
    counts = [len(labels) for labels in tr.labels]
    f = _GatedModel(model, counts)
    ones = torch.ones(B, sum(counts), device=tokens.device)
    attr, delta = IntegratedGradients(f).attribute(
        ones,
        baselines=torch.zeros_like(ones),
        additional_forward_args=(tokens, pos, tgt),
        n_steps=n_steps,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    with torch.no_grad():
        full, zero = f(ones, tokens, pos, tgt), f(torch.zeros_like(ones), tokens, pos, tgt)
    split = list(torch.split(attr.detach(), counts, dim=1))  # S x [B, K_l]
    weight = pad_last([tr.weights(l)[rows, pos].float() for l in range(1, tr.n_sites + 1)])
    return GateAttribution(
        residual=tr.residual,
        sites=np.arange(1, tr.n_sites + 1),
        sources=tuple(tr.labels),
        positions=to_numpy(pos),
        targets=to_numpy(tgt),
        target_tokens=_strings(model, to_numpy(tgt)),
        attribution=to_numpy(pad_last(split)),
        weight=to_numpy(weight),
        logprob_model=to_numpy(full),
        logprob_baseline=to_numpy(zero),
        convergence_delta=to_numpy(delta),
        n_steps=int(n_steps),
    )


def _per_prompt(value, default: Tensor, device) -> Tensor:
    """[B] long tensor from None (default), an int or a sequence."""
    if value is None:
        return default.long()
    out = torch.as_tensor(value, dtype=torch.long, device=device).reshape(-1)
    return out.expand(default.shape[0]).clone() if out.numel() == 1 else out


def _strings(model, ids: np.ndarray) -> tuple[str, ...]:
    tokenizer = getattr(model, "tokenizer", None)
    return tuple(tokenizer.decode([int(i)]) for i in ids) if tokenizer is not None else ("",) * len(ids)
