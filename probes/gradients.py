"""Gradient magnitudes per Transformer block and per site (paper Fig. 5c).

The loss is the mean next-token cross-entropy over the prompt's real tokens. Gradients come from
``torch.autograd.grad`` with explicit inputs, so nothing is accumulated into the shared model's
``.grad`` fields; each h_l is captured by a mixer that returns the usual weighted sum.

What d loss / d h_l means depends on the rule. In AttnRes models h_l is built afresh at site l and read
by sublayer l alone. In PreNorm it is the carried stream: a change of h_l reaches every later input
h_j (j >= l) and the readout, so its gradient is the sum of the gradients at those inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attnres.sources import weighted_sum

from ._common import ProbeResult, expect_shape, mask_tokens, masked_mean, next_token_targets, to_numpy
from .prompt import PromptError, make_batch


@dataclass(frozen=True)
class GradientNorms(ProbeResult):
    """Norms of d loss / d theta per Transformer block and d loss / d h_l per site (S = L+1)."""

    residual: str  # "prenorm" | "full" | "block"
    mask: np.ndarray  # [B, T] bool, True at real tokens
    loss: float  # mean next-token cross-entropy over the batch
    block_param_grad_norm: np.ndarray  # [n_layer] L2 norm over every parameter of Transformer block i
    embedding_grad_norm: float  # L2 norm over token + position embeddings (and a tied head)
    readout_grad_norm: float  # L2 norm over the output depth attention, final norm and an untied head
    stream_grad_norm: (
        np.ndarray
    )  # [B, T, S] per-token L2 norm of d loss / d h_l (PreNorm: the carried stream)
    stream_grad_norm_mean: np.ndarray  # [S] mean over real tokens
    stream_grad_total: np.ndarray  # [S] L2 norm of d loss / d h_l over the whole batch

    def check(self) -> None:
        """Checks per-site arrays against mask and each other."""
        (B, T), S = self.mask.shape, self.stream_grad_norm.shape[-1]
        expect_shape("stream_grad_norm", self.stream_grad_norm, (B, T, S))
        expect_shape("stream_grad_norm_mean", self.stream_grad_norm_mean, (S,))
        expect_shape("stream_grad_total", self.stream_grad_total, (S,))
        expect_shape("block_param_grad_norm", self.block_param_grad_norm, ((S - 1) // 2,))


def _param_groups(model) -> dict[str, list[tuple[str, Tensor]]]:
    """Trainable parameters grouped as 'block{i}', 'embedding' and 'readout' (shared ones once)."""
    groups: dict[str, list] = {f"block{i}": [] for i in range(model.config.n_layer)}
    groups.update(embedding=[], readout=[])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("blocks."):
            key = "block" + name.split(".")[1]
        else:
            key = "embedding" if name.startswith(("wte.", "wpe.")) else "readout"
        groups[key].append((name, p))
    return groups


def gradient_norms(model, inputs) -> GradientNorms:
    """Measures how large the gradients are at every block and site, without touching ``.grad``.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``); each prompt needs at least
            two tokens (there is a next token to predict).

    Returns:
        GradientNorms.
    """
    batch = make_batch(model, inputs)
    targets = next_token_targets(batch)
    if not bool((targets >= 0).any()):
        raise PromptError("gradients need a prompt of at least two tokens (a next token to predict)")
    captured: list[Tensor] = []

    def capture(site: int, sources: Tensor, weights: Tensor | None) -> Tensor:
        h = weighted_sum(sources, weights)
        captured.append(h)
        return h

    groups = _param_groups(model)
    params = [p for members in groups.values() for _, p in members]
    with torch.enable_grad():
        loss = model(batch.tokens, targets=targets, mixer=capture).loss
        grads = torch.autograd.grad(loss, params + captured, allow_unused=True)
    param_norms, start = {}, 0
    for key, members in groups.items():
        chunk = [g for g in grads[start : start + len(members)] if g is not None]
        param_norms[key] = sum(float(g.float().pow(2).sum()) for g in chunk) ** 0.5
        start += len(members)
    site_grads = torch.stack(
        [g if g is not None else torch.zeros_like(h) for g, h in zip(grads[start:], captured, strict=True)]
    ).float()  # [S, B, T, d]: each captured h_l feeds sublayer l (or the readout) alone
    if model.config.residual == "prenorm":  # the stream h_l flows on into h_{l+1}, ..., h_{L+1}
        site_grads = site_grads.flip(0).cumsum(0).flip(0)
    per_token = site_grads.norm(dim=-1).permute(1, 2, 0)  # [B, T, S]
    return GradientNorms(
        residual=model.config.residual,
        mask=to_numpy(batch.mask),
        loss=float(loss.detach()),
        block_param_grad_norm=np.array([param_norms[f"block{i}"] for i in range(model.config.n_layer)]),
        embedding_grad_norm=param_norms["embedding"],
        readout_grad_norm=param_norms["readout"],
        stream_grad_norm=to_numpy(mask_tokens(per_token, batch.mask)),
        stream_grad_norm_mean=to_numpy(masked_mean(per_token, batch.mask)),
        stream_grad_total=to_numpy(per_token.pow(2).sum((0, 1)).sqrt()),
    )
