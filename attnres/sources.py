"""Which outputs each depth source sums: the one home of the source rule (DESIGN.md §1, §3).

A model with L sublayers has sites l = 1..L+1 (site L+1 is the readout). Site l reads sources whose
labels are fixed by the residual rule:

    prenorm, full   ("emb", "L1", .., "L{l-1}"); "Li" is v_i alone
    block           ("emb", "B1", .., "B{n-1}") at the first layer of block n, plus "partial" at its
                    later layers; "Bn" sums v_i over block n, "partial" the block's outputs so far;
                    the readout reads ("emb", "B1", .., "B{N}") (the last block counts as done)

Blocks hold S consecutive sublayers (only the last one can be shorter), N = ceil(L / S). Full AttnRes
is read as blocks of one sublayer each. The model, lint, probes, figures and the lab all ask this
module; none of them spells the rule again. ``weighted_sum`` is how a site mixes its sources.

Two conventions of imported peers (docs/formats.md) live here too: ``first_block_has_embedding``
(block 1's partial sum starts from v_0, so site 1 reads ("emb", "partial") and "B1" holds v_0..v_S)
and the readout's mix, ``readout_mix``: "attnres" (a learned softmax), "none" (the last block alone)
or "sum" (every block but the embedding, weight 1 each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import Tensor

    from .config import ModelConfig


@dataclass(frozen=True)
class SourceRule:
    """The depth sources of one architecture.

    Attributes:
        residual: "prenorm" | "full" | "block".
        n_sublayers: L, the number of sublayers (attention and MLP each count once).
        attnres_block_size: S, sublayers per block; read for "block" only (other rules use 1).
        first_block_has_embedding: block 1's partial sum starts from v_0 (a peer's convention).
        readout_mix: how site L+1 mixes its sources: "attnres" | "none" | "sum" (ModelConfig.readout).
    """

    residual: str
    n_sublayers: int
    attnres_block_size: int | None = None
    first_block_has_embedding: bool = False
    readout_mix: str = "attnres"

    @classmethod
    def of(cls, config: ModelConfig) -> SourceRule:
        """The rule of a model config."""
        return cls(
            config.residual,
            config.n_sublayers,
            config.attnres_block_size,
            config.first_block_has_embedding,
            config.readout,
        )

    @property
    def S(self) -> int:
        """Sublayers per block: attnres_block_size for Block, 1 otherwise."""
        return self.attnres_block_size if self.residual == "block" else 1

    @property
    def N(self) -> int:
        """Number of blocks, ceil(L / S) (Full and PreNorm: L)."""
        return -(-self.n_sublayers // self.S)

    @property
    def readout(self) -> int:
        """The readout's site, L + 1."""
        return self.n_sublayers + 1

    def block(self, l: int) -> int:
        """The block n (1..N) that sublayer l (1..L) belongs to."""
        return (l - 1) // self.S + 1

    def block_members(self, n: int) -> range:
        """The sublayers of block n: (n-1)*S+1 .. min(n*S, L)."""
        return range((n - 1) * self.S + 1, min(n * self.S, self.n_sublayers) + 1)

    def ends_block(self, l: int) -> bool:
        """Whether sublayer l is the last of its block (so its block sum is complete after it)."""
        return l % self.S == 0 or l == self.n_sublayers

    def labels(self, l: int) -> tuple[str, ...]:
        """Labels of the sources that site l (1..L+1) reads, in the order the model stacks them."""
        if self.residual != "block":
            return ("emb",) + tuple(f"L{i}" for i in range(1, l))
        if l == self.readout:
            return ("emb",) + tuple(f"B{n}" for n in range(1, self.N + 1))
        n, first = self.block(l), (l - 1) % self.S == 0 and not self._embedding_starts(self.block(l))
        return ("emb",) + tuple(f"B{i}" for i in range(1, n)) + (() if first else ("partial",))

    def all_labels(self) -> list[tuple[str, ...]]:
        """``labels(l)`` for every site l = 1..L+1."""
        return [self.labels(l) for l in range(1, self.readout + 1)]

    def readout_labels(self) -> tuple[str, ...]:
        """Labels of the readout's sources (site L+1)."""
        return self.labels(self.readout)

    def members(self, label: str, l: int) -> range:
        """The outputs v_i (i = 0..L, v_0 the embedding) that source ``label`` of site l sums."""
        if label == "emb":
            return range(0, 1)
        if label == "partial":
            n = self.block(l)
            return range(0 if self._embedding_starts(n) else self.block_members(n).start, l)
        if label[:1] == "B":
            n = int(label[1:])
            members = self.block_members(n)
            return range(0, members.stop) if self._embedding_starts(n) else members
        return range(int(label[1:]), int(label[1:]) + 1)

    def _embedding_starts(self, n: int) -> bool:
        """Whether block n's sum starts from v_0 (block 1 under first_block_has_embedding)."""
        return self.first_block_has_embedding and n == 1

    def readout_coefficients(self) -> tuple[float, ...] | None:
        """The readout's fixed weights over ``readout_labels()``; None when they are learned.

        "none" keeps the last block alone, "sum" adds every block but the embedding (v_1 + .. + v_L).
        """
        K = len(self.readout_labels())
        if self.readout_mix == "none":
            return (0.0,) * (K - 1) + (1.0,)
        if self.readout_mix == "sum":
            return (0.0,) + (1.0,) * (K - 1)
        return None

    def holder(self, i: int, l: int) -> int:
        """Index k in ``labels(l)`` of the source of site l that contains output v_i (i < l)."""
        return next(k for k, label in enumerate(self.labels(l)) if i in self.members(label, l))

    def last_member(self, label: str, l: int) -> int:
        """The latest output i that source ``label`` of site l contains (where a picture draws it)."""
        return self.members(label, l)[-1]


def weighted_sum(sources: Tensor, weights: Tensor | None) -> Tensor:
    """h_l = sum_k alpha_k source_k: a site's sources mixed by its depth weights.

    The stacked sources [K, B, T, d] and weights [B, T, K] give [B, T, d]; without weights
    (PreNorm) the plain sum, weight 1 each.

    Args:
        sources: the site's sources, stacked in the order of ``SourceRule.labels``.
        weights: alpha over those sources per token, or None for the plain sum.
    """
    if weights is None:
        return sources.sum(0)
    return torch.einsum("btk,kbtd->btd", weights, sources)


def running_block_sums(rule: SourceRule, sublayer_outputs: list[Tensor], embedding=None) -> list[Tensor]:
    """running[i-1] = v_{first of i's block} + .. + v_i, added in the model's own order.

    So ``running[l-2]`` is site l's "partial" source and ``running[last of block n - 1]`` is b_n, each
    bit-identical to what the model mixed. For rules without blocks, the outputs themselves. Under
    ``first_block_has_embedding`` block 1's sums start from ``embedding`` (v_0), which is then needed.
    """
    if rule.residual != "block":
        return list(sublayer_outputs)
    if rule.first_block_has_embedding and embedding is None:
        raise ValueError("first_block_has_embedding: block 1's running sums start from the embedding")
    running, partial = [], embedding if rule.first_block_has_embedding else None
    for i, v in enumerate(sublayer_outputs, start=1):
        partial = v if partial is None else partial + v
        running.append(partial)
        if rule.ends_block(i):
            partial = None
    return running


def source_tensors(
    rule: SourceRule, l: int, embedding: Tensor, sublayer_outputs: list[Tensor], running=None
) -> list[Tensor]:
    """The sources site l reads, rebuilt from v_0 and v_1..v_L (block sums as the model adds them).

    Args:
        rule: the model's SourceRule.
        l: the site, 1..L+1.
        embedding: v_0 [B, T, d].
        sublayer_outputs: v_1..v_L, each [B, T, d].
        running: ``running_block_sums(rule, sublayer_outputs, embedding)`` when the caller keeps it.

    Returns:
        K_l tensors [B, T, d] in the order of ``rule.labels(l)``.
    """
    running = running_block_sums(rule, sublayer_outputs, embedding) if running is None else running
    return [
        embedding
        if label == "emb" or rule.last_member(label, l) == 0
        else running[rule.last_member(label, l) - 1]
        for label in rule.labels(l)
    ]
