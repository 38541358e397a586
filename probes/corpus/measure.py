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

from ..gradients import _param_groups
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

    def measured_columns(self, present: Tensor) -> Tensor:
        """[F'] the columns of F a batch measures.

        Every feature but the (site, source) cells that do not exist (``present`` [S, K] False),
        which hold 0 at every token.
        """
        keep = torch.ones(self.width, dtype=torch.bool)
        cells = present.flatten().cpu()
        for name in ("alpha", "weighted_norm"):
            keep[self.slices()[name][0]] = cells
        return keep.nonzero().squeeze(1).to(present.device)


@dataclass
class BatchStats:
    """One batch's per-token quantities (all on the model's device, float32)."""

    features: Tensor  # [B, T, F'] the measured columns of Layout (``Layout.measured_columns``)
    cell_rms: Tensor  # [B, T, P] RMS of each present cell's source (the first P features are its alpha)
    loss: Tensor  # [B, T-1] next-token cross-entropy (0 where there is no target)
    block_grad_norm: Tensor | None  # [n] L2 norm of d(batch loss)/d(block parameters)
    columns: Tensor  # [F'] long: the columns of Layout that features holds (the others are 0)
    cells: Tensor  # [P] long: the flat (site, source) cells of cell_rms and of the first P features


class BatchMeasure:
    """Per-token measurements of one model (the slot maps are built once)."""

    def __init__(self, model, lens: bool = True, gradients: bool = False):
        self.model, self.lens, self.gradients = model, lens, gradients
        self.labels, slot, present = source_slots(model)
        device = next(model.parameters()).device
        self.slot, self.present = slot.to(device), present.to(device)
        L = model.config.n_sublayers
        self.layout = Layout(L + 1, slot.shape[1], L, lens, gradients)
        self.columns = self.layout.measured_columns(self.present)
        self.cells = self.present.flatten().nonzero().squeeze(1)  # [P] flat (site, source) cells
        self.rule = SourceRule.of(model.config)
        # the (site, column) of site l+1's source that holds v_l, l = 1..L
        holder = [self.rule.holder(l, l + 1) for l in range(1, L + 1)]
        self.holder = (torch.arange(1, L + 1, device=device), torch.tensor(holder, device=device))

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
        """The forward with its loss's gradients per block parameters and per site input h_l.

        Each h_l is taken as its norm receives it, so PreNorm's stream counts every later use too.
        """
        captured: list[Tensor] = []
        inputs = [norm for b in self.model.blocks for norm in (b.attn_norm, b.mlp_norm)] + [
            self.model.final_norm
        ]
        hooks = [norm.register_forward_pre_hook(lambda _, args: captured.append(args[0])) for norm in inputs]
        groups = _param_groups(self.model)
        blocks = [[p for _, p in groups[f"block{i}"]] for i in range(self.model.config.n_layer)]
        params = [p for members in blocks for p in members]
        try:
            with torch.enable_grad():
                out = self.model(tokens, targets=targets, return_internals=True)
        finally:
            for hook in hooks:
                hook.remove()
        if len(captured) != self.layout.S:
            raise RuntimeError(f"expected {self.layout.S} site inputs, the forward passed {len(captured)}")
        grads = torch.autograd.grad(out.loss, params + captured, allow_unused=True)
        norms, start = [], 0
        for members in blocks:
            chunk = [g.float().pow(2).sum() for g in grads[start : start + len(members)] if g is not None]
            norms.append(torch.stack(chunk).sum().sqrt() if chunk else torch.zeros((), device=tokens.device))
            start += len(members)
        site_grads = [
            g.float().norm(dim=-1) if g is not None else torch.zeros(h.shape[:2], device=h.device)
            for g, h in zip(grads[start:], captured, strict=True)
        ]
        return out, (torch.stack(norms), torch.stack(site_grads, -1))

    def _measure(self, out, targets: Tensor, captured) -> BatchStats:
        it, L = out.internals, self.layout.L
        h = it.layer_inputs
        v = [it.embedding, *it.sublayer_outputs]
        residual = self.model.config.residual
        running = (
            running_block_sums(self.rule, it.sublayer_outputs, it.embedding) if residual == "block" else []
        )
        # one tensor at a time, not stacked: each [B, T, d] stays in cache through its reductions
        src_rms = torch.stack([rms(x) for x in v + running], -1)  # [B, T, M]
        h_rms = torch.stack([rms(x) for x in h], -1)  # [B, T, S]
        alpha = self._weights(it, h[0])
        p = alpha / alpha.sum(-1, keepdim=True)
        alpha_cells = alpha.flatten(2)[..., self.cells]  # [B, T, P]
        cell_rms = src_rms[..., self.slot.flatten()[self.cells]]  # [B, T, P]
        carried = (
            h_rms[..., 1:] if residual == "prenorm" else src_rms[..., (L + 1 if running else 1) :][..., :L]
        )
        block_update = [rms(v[2 * i + 1] + v[2 * i + 2]) for i in range(L // 2)]
        parts = [alpha_cells, alpha_cells * cell_rms, p.amax(-1)]
        parts += [
            -(p * p.clamp_min(1e-30).log()).sum(-1),
            h_rms,
            src_rms[..., 1 : L + 1] / h_rms[..., :L],
            self._shares(alpha, v, h, h_rms),
        ]
        parts += [carried[..., 1::2], torch.stack(block_update, -1)]
        logprobs = out.logits.float().log_softmax(-1)
        if self.lens:
            parts.append(self._lens_kl(h, out.logits, logprobs))
        grad_norm = None
        if captured is not None:
            grad_norm, stream_grads = captured
            parts.append(stream_grads)
        loss = -logprobs[:, :-1].gather(-1, targets[:, :-1].clamp_min(0).unsqueeze(-1)).squeeze(-1)
        loss = loss * (targets[:, :-1] >= 0)
        features = torch.cat([x.float() for x in parts], -1)
        return BatchStats(features, cell_rms, loss, grad_norm, self.columns, self.cells)

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
        dots = torch.stack([torch.linalg.vecdot(v[l].float(), h[l].float()) for l in range(1, L + 1)], -1)
        weights = alpha[:, :, self.holder[0], self.holder[1]]  # [B, T, L]
        return weights * dots / (d * h_rms[..., 1:].pow(2)).clamp_min(1e-30)

    def _lens_kl(self, h: list[Tensor], logits: Tensor, final: Tensor) -> Tensor:
        """[B, T, S] KL(p_final || p_lens(h_l)) in nats, one site at a time (its logits stay in cache).

        KL = sum p_f log p_f - sum p_f z_l + logsumexp(z_l) for the lens logits z_l; the readout site's
        lens logits are the model's own (``logits``), so it is not read out again.
        """
        p_final = final.exp()
        own = (p_final * final).sum(-1)  # [B, T]
        kl = []
        for site, h_l in enumerate(h):
            z = (logits if site == len(h) - 1 else self.model.readout(h_l)).float()  # [B, T, V]
            kl.append(own + z.logsumexp(-1) - torch.linalg.vecdot(z, p_final))
        return torch.stack(kl, -1)
