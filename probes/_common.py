"""Shared machinery: the result base class, one traced forward pass, and array helpers.

Every probe runs the model once through ``trace`` (the literal sequential equations, so each h_l is
exactly the weighted sum of the sources reconstructed here), does its arithmetic in float32 on the
model's device, and converts to numpy only when it builds its result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from attnres.sources import SourceRule, running_block_sums, source_tensors

from .prompt import Batch, make_batch


@dataclass(frozen=True)
class ProbeResult:
    """Base of every probe result: frozen, read-only arrays, shapes checked, ``to_dict`` for JSON."""

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        self.check()

    def check(self) -> None:
        """Raises ValueError when a field's shape disagrees with the others (subclasses override)."""

    def to_dict(self) -> dict:
        """Every field as JSON-ready Python values (arrays -> nested lists, NaN -> None)."""
        return {field.name: _plain(getattr(self, field.name)) for field in fields(self)}


def _plain(value):
    if isinstance(value, ProbeResult):
        return value.to_dict()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            out = value.astype(object)
            out[np.isnan(value)] = None
            return out.tolist()
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def expect_shape(name: str, array: np.ndarray, shape: tuple) -> None:
    """Raises ValueError unless array has the given shape (None matches any size)."""
    ok = array.ndim == len(shape) and all(
        s is None or s == a for s, a in zip(shape, array.shape, strict=False)
    )
    if not ok:
        raise ValueError(f"field '{name}' has shape {array.shape}, expected {shape}")


def site_kinds(n_sites: int) -> tuple[str, ...]:
    """'attn' for odd l <= L, 'mlp' for even l <= L, 'readout' for site L+1."""
    return tuple("readout" if l == n_sites else ("attn" if l % 2 else "mlp") for l in range(1, n_sites + 1))


def to_numpy(tensor: Tensor) -> np.ndarray:
    """float32 numpy copy of a tensor on any device (the probes' only exit from torch)."""
    return tensor.detach().float().cpu().numpy() if tensor.is_floating_point() else tensor.cpu().numpy()


def pad_last(rows: list[Tensor], fill: float = float("nan")) -> Tensor:
    """Stacks tensors [..., K_l] into [..., n, Kmax], padding the last axis with fill."""
    k_max = max(r.shape[-1] for r in rows)
    padded = [torch.nn.functional.pad(r.float(), (0, k_max - r.shape[-1]), value=fill) for r in rows]
    return torch.stack(padded, dim=-2)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [B, T, ...] over real tokens (mask [B, T]) -> [...]; NaN-free inputs assumed."""
    m = mask.reshape(mask.shape + (1,) * (x.dim() - 2)).to(x.dtype)
    return (x * m).sum((0, 1)) / m.sum((0, 1)).clamp_min(1)


def mask_tokens(x: Tensor, mask: Tensor) -> Tensor:
    """x [B, T, ...] float with NaN at padded positions."""
    m = mask.reshape(mask.shape + (1,) * (x.dim() - 2))
    return torch.where(m, x.float(), torch.full_like(x.float(), float("nan")))


@dataclass
class Trace:
    """One forward pass with everything the probes need (all detached, on the model's device)."""

    model: object  # the attnres.Model
    batch: Batch
    logits: Tensor  # [B, T, vocab]
    layer_inputs: list[Tensor]  # L+1 x [B, T, d]: h_1..h_{L+1}
    embedding: Tensor  # [B, T, d] v_0
    sublayer_outputs: list[Tensor]  # L x [B, T, d]: v_1..v_L
    depth_weights: list[Tensor] | None  # L+1 x [B, T, K_l]; None for PreNorm
    labels: list[tuple[str, ...]]  # L+1 source label tuples

    @property
    def n_sites(self) -> int:
        """L + 1."""
        return len(self.layer_inputs)

    @property
    def residual(self) -> str:
        """'prenorm' | 'full' | 'block'."""
        return self.model.config.residual

    def weights(self, l: int) -> Tensor:
        """[B, T, K_l] weights of site l's sources: alpha, or ones for PreNorm (h_l = sum v_i)."""
        if self.depth_weights is None:
            h = self.layer_inputs[l - 1]
            return h.new_ones(h.shape[0], h.shape[1], len(self.labels[l - 1]))
        return self.depth_weights[l - 1]

    @property
    def source_rule(self) -> SourceRule:
        """Which outputs each source label sums (attnres.sources)."""
        return SourceRule.of(self.model.config)

    def sources(self, l: int) -> Tensor:
        """[K_l, B, T, d] the sources site l reads, rebuilt from v_0..v_L by their labels.

        Block sums and partial sums are accumulated in the model's own order, so they are bit-identical
        to what the model mixed.
        """
        return torch.stack(source_tensors(self.source_rule, l, self.embedding, self.sublayer_outputs))

    def contributions(self, l: int) -> Tensor:
        """[K_l, B, T, d] weight_k * source_k: the terms whose sum is h_l."""
        return self.weights(l).permute(2, 0, 1).unsqueeze(-1) * self.sources(l)

    def running_block_sums(self) -> list[Tensor]:
        """running[i-1] = sum of the outputs of layer i's depth block up to and including v_i."""
        return running_block_sums(self.source_rule, self.sublayer_outputs, self.embedding)


@torch.no_grad()
def trace(model, inputs) -> Trace:
    """Runs the model once (sequential depth path) and keeps its internals.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: anything ``make_batch`` accepts, or a Trace of this model, returned as it is (so
            several probes can share one forward pass).
    """
    if isinstance(inputs, Trace):
        if inputs.model is not model:
            raise ValueError("this trace was made by another model; trace the inputs with this one")
        return inputs
    batch = make_batch(model, inputs)
    out = model(batch.tokens, return_internals=True, depth_impl="sequential")
    it = out.internals
    return Trace(
        model,
        batch,
        out.logits.detach(),
        it.layer_inputs,
        it.embedding,
        it.sublayer_outputs,
        it.depth_weights,
        list(it.depth_sources),
    )


def resume(model, site: int, embedding: Tensor, outputs: list[Tensor], mixer, shared_keys: bool = False,
           stop: int | None = None):  # fmt: skip
    """h_{L+1} of a mixer run whose sublayers 1..site-1 gave ``outputs``: only sites site..L+1 run.

    Depth is causal (site l reads v_0..v_{l-1} only), so a run that differs from another from site l
    on shares its v_1..v_{l-1}. This is the model's own sequential path (``Model.sequential``) started
    at ``site``: with the prefix of the same mixer run the result is bit-identical.

    Args:
        model: an ``attnres.Model``.
        site: the first site that runs, 1..L+1.
        embedding: v_0 [B, T, d].
        outputs: v_1..v_{site-1}, each [B, T, d].
        mixer: the mixer (site, sources [K, B, T, d], weights [B, T, K] or None) -> h [B, T, d].
        shared_keys: keys normalised once per source (``Model.forward(..., shared_keys=True)``).
        stop: when given, run sites site..stop-1 only and return v_1..v_{stop-1} (a prefix to
            resume from later).

    Returns:
        h_{L+1} [B, T, d] (``model.readout`` of it gives the logits), or the outputs with ``stop``.
    """
    return model.sequential(embedding, mixer, shared_keys=shared_keys, start=site, outputs=outputs, stop=stop)


def next_token_targets(batch: Batch) -> Tensor:
    """[B, T] the next real token at each position, -1 where there is none (last or padded)."""
    targets = torch.full_like(batch.tokens, -1)
    valid = batch.mask[:, 1:] & batch.mask[:, :-1]
    targets[:, :-1] = torch.where(valid, batch.tokens[:, 1:], targets[:, :-1])
    return targets


def last_positions(batch: Batch) -> Tensor:
    """[B] index of each prompt's last real token."""
    return batch.mask.long().sum(1) - 1
