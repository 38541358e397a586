"""What one batch adds to a corpus sweep: every per-token quantity from one forward pass, in torch.

``BatchMeasure`` turns a model's internals into a feature matrix [B, T, F] (every quantity the sweep
averages over tokens and sequences, laid out by ``Layout``), the routing weights and their sources'
RMS per (site, source) cell, the next-token loss per position and, optionally, gradient magnitudes.
Nothing leaves the device here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attnres.sources import SourceRule, running_block_sums

from ..gradients import _param_groups, weighted_sum
from ..norms import rms


def source_slots(model) -> tuple[list[tuple[str, ...]], Tensor, Tensor]:
    """Labels per site, and for each (site, source) cell the slot of its tensor in ``distinct``.

    Slots 0..L are v_0..v_L; for Block models slots L+1..2L are the running block sums r_1..r_L
    (``attnres.sources.running_block_sums``): a block source is r at its last member. Returns
    (labels, slot [S, Kmax] long, present [S, Kmax] bool).
    """
    rule = SourceRule.of(model.config)
    L, labels = rule.n_sublayers, rule.all_labels()
    offset = L if rule.residual == "block" else 0
    slot = torch.zeros(L + 1, max(len(s) for s in labels), dtype=torch.long)
    present = torch.zeros(slot.shape, dtype=torch.bool)
    for row, site_labels in enumerate(labels):
        for k, label in enumerate(site_labels):
            slot[row, k] = 0 if label == "emb" else offset + rule.last_member(label, row + 1)
            present[row, k] = True
    return labels, slot, present


@dataclass(frozen=True)
class Layout:
    """Where each per-token quantity sits in the feature axis F (name -> slice, shape)."""

    S: int  # sites L+1
    K: int  # most sources at a site
    L: int  # sublayers
    lens: bool
    gradients: bool

    def parts(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every block of features, in order."""
        S, K, L, n = self.S, self.K, self.L, self.L // 2
        parts = [("alpha", (S, K)), ("weighted_norm", (S, K)), ("max_weight", (S,)), ("entropy", (S,))]
        parts += [("input_rms", (S,)), ("update_ratio", (L,)), ("update_share", (L,))]
        parts += [("block_output_rms", (n,)), ("block_update_rms", (n,))]
        parts += [("lens_kl", (S,))] if self.lens else []
        parts += [("stream_grad_norm", (S,))] if self.gradients else []
        return parts

    def slices(self) -> dict[str, tuple[slice, tuple[int, ...]]]:
        """name -> (slice of F, shape)."""
        out, start = {}, 0
        for name, shape in self.parts():
            size = int(torch.tensor(shape).prod())
            out[name] = (slice(start, start + size), shape)
            start += size
        return out

    @property
    def width(self) -> int:
        """F."""
        return sum(int(torch.tensor(shape).prod()) for _, shape in self.parts())


@dataclass
class BatchStats:
    """One batch's per-token quantities (all on the model's device, float32)."""

    features: Tensor  # [B, T, F] laid out by Layout
    alpha: Tensor  # [B, T, S, K] weights (0 at absent sources)
    cell_rms: Tensor  # [B, T, S, K] RMS of each cell's source
    loss: Tensor  # [B, T-1] next-token cross-entropy (0 where there is no target)
    block_grad_norm: Tensor | None  # [n] L2 norm of d(batch loss)/d(block parameters)


class BatchMeasure:
    """Per-token measurements of one model (the slot maps are built once)."""

    def __init__(self, model, lens: bool = True, gradients: bool = False):
        self.model, self.lens, self.gradients = model, lens, gradients
        self.labels, slot, present = source_slots(model)
        device = next(model.parameters()).device
        self.slot, self.present = slot.to(device), present.to(device)
        L = model.config.n_sublayers
        self.layout = Layout(L + 1, slot.shape[1], L, lens, gradients)
        self.rule = SourceRule.of(model.config)
        # the column of site l+1's source that holds v_l, l = 1..L
        self.holder = [self.rule.holder(l, l + 1) for l in range(1, L + 1)]

    def __call__(self, tokens: Tensor, mask: Tensor) -> BatchStats:
        """Runs the model on tokens [B, T] (mask [B, T]) and measures everything."""
        targets = torch.full_like(tokens, -1)
        targets[:, :-1] = torch.where(mask[:, 1:], tokens[:, 1:], targets[:, :-1])
        if self.gradients:
            out, captured = self._forward_with_grad(tokens, targets)
        else:
            with torch.no_grad():
                out, captured = self.model(tokens, return_internals=True), None
        with torch.no_grad():
            return self._measure(out, targets, captured)

    def _forward_with_grad(self, tokens, targets):
        captured: list[Tensor] = []

        def capture(site: int, sources: Tensor, weights: Tensor | None) -> Tensor:
            captured.append(weighted_sum(sources, weights))
            return captured[-1]

        groups = _param_groups(self.model)
        blocks = [[p for _, p in groups[f"block{i}"]] for i in range(self.model.config.n_layer)]
        params = [p for members in blocks for p in members]
        with torch.enable_grad():
            out = self.model(tokens, targets=targets, return_internals=True, mixer=capture)
            grads = torch.autograd.grad(out.loss, params + captured, allow_unused=True)
        norms, start = [], 0
        for members in blocks:
            chunk = [g.float().pow(2).sum() for g in grads[start : start + len(members)] if g is not None]
            norms.append(torch.stack(chunk).sum().sqrt() if chunk else torch.zeros((), device=tokens.device))
            start += len(members)
        site_grads = torch.stack(
            [
                g if g is not None else torch.zeros_like(h)
                for g, h in zip(grads[start:], captured, strict=True)
            ]
        ).float()  # [S, B, T, d]; PreNorm's stream h_l also flows on into every later input
        if self.model.config.residual == "prenorm":
            site_grads = site_grads.flip(0).cumsum(0).flip(0)
        return out, (torch.stack(norms), site_grads.norm(dim=-1).permute(1, 2, 0))

    def _measure(self, out, targets: Tensor, captured) -> BatchStats:
        it, L = out.internals, self.layout.L
        h = it.layer_inputs
        v = [it.embedding, *it.sublayer_outputs]
        residual = self.model.config.residual
        running = (
            running_block_sums(self.rule, it.sublayer_outputs, it.embedding) if residual == "block" else []
        )
        distinct = v + running
        src_rms = torch.stack([rms(x) for x in distinct], -1)  # [B, T, M]
        h_rms = torch.stack([rms(x) for x in h], -1)  # [B, T, S]
        alpha = self._weights(it, h[0])
        p = alpha / alpha.sum(-1, keepdim=True)
        cell_rms = src_rms[..., self.slot] * self.present  # [B, T, S, K]
        share = self._shares(alpha, v, h, h_rms)
        carried = (
            h_rms[..., 1:] if residual == "prenorm" else src_rms[..., (L + 1 if running else 1) :][..., :L]
        )
        block_update = [rms(v[2 * i + 1] + v[2 * i + 2]) for i in range(L // 2)]
        parts = [alpha.flatten(2), (alpha * cell_rms).flatten(2), p.amax(-1)]
        parts += [
            -(p * p.clamp_min(1e-30).log()).sum(-1),
            h_rms,
            src_rms[..., 1 : L + 1] / h_rms[..., :L],
            share,
        ]
        parts += [carried[..., 1::2], torch.stack(block_update, -1)]
        logprobs = out.logits.float().log_softmax(-1)
        if self.lens:
            parts.append(self._lens_kl(h, logprobs))
        grad_norm = None
        if captured is not None:
            grad_norm, stream_grads = captured
            parts.append(stream_grads)
        loss = -logprobs[:, :-1].gather(-1, targets[:, :-1].clamp_min(0).unsqueeze(-1)).squeeze(-1)
        loss = loss * (targets[:, :-1] >= 0)
        return BatchStats(torch.cat([x.float() for x in parts], -1), alpha, cell_rms, loss, grad_norm)

    def _weights(self, it, h1: Tensor) -> Tensor:
        """[B, T, S, K] routing weights, 0 at absent sources (PreNorm: 1 at every source)."""
        B, T = h1.shape[:2]
        if it.depth_weights is None:
            return self.present.float().expand(B, T, -1, -1)
        alpha = h1.new_zeros(B, T, self.layout.S, self.layout.K, dtype=torch.float32)
        for row, w in enumerate(it.depth_weights):
            alpha[:, :, row, : w.shape[-1]] = w.float()
        return alpha

    def _shares(self, alpha: Tensor, v: list[Tensor], h: list[Tensor], h_rms: Tensor) -> Tensor:
        """[B, T, L] share of h_{l+1} held by v_l itself (times the weight of the source holding it).

        w <v_l, h_{l+1}> / ||h_{l+1}||^2, with ||h||^2 = d * RMS(h)^2.
        """
        L, d = self.layout.L, h[0].shape[-1]
        dots = torch.stack(
            [torch.einsum("btd,btd->bt", v[l].float(), h[l].float()) for l in range(1, L + 1)], -1
        )
        weights = alpha[:, :, torch.arange(1, L + 1), torch.tensor(self.holder)]  # [B, T, L]
        return weights * dots / (d * h_rms[..., 1:].pow(2)).clamp_min(1e-30)

    def _lens_kl(self, h: list[Tensor], final: Tensor) -> Tensor:
        """[B, T, S] KL(p_final || p_lens(h_l)) in nats, sites read out in chunks of one matmul each.

        KL = sum p_f log p_f - sum p_f z_l + logsumexp(z_l) for the lens logits z_l.
        """
        B, T, V = final.shape
        p_final = final.exp()
        own = (p_final * final).sum(-1)  # [B, T]
        per_chunk = max(1, (1 << 24) // max(B * T * V, 1))  # about 64 MB of fp32 logits at once
        kl = []
        for start in range(0, len(h), per_chunk):
            z = self.model.readout(torch.stack(h[start : start + per_chunk])).float()  # [C, B, T, V]
            kl.append(own + z.logsumexp(-1) - (z * p_final).sum(-1))
        return torch.cat(kl).permute(1, 2, 0)
