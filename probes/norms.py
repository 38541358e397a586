"""Residual-stream magnitudes: signal dilution (paper §1) and output magnitude per block (Fig. 5b).

All magnitudes are RMS over the d_model features (L2 norm = RMS * sqrt(d_model)); ratios are the
same in either. Per-token arrays carry NaN at padded positions; ``*_mean`` fields average real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._common import ProbeResult, expect_shape, mask_tokens, masked_mean, to_numpy, trace


@dataclass(frozen=True)
class StreamNorms(ProbeResult):
    """Norms of every layer input, source and carried state (S = L+1 sites, L sublayers, n = L/2 blocks)."""

    residual: str  # "prenorm" | "full" | "block"
    d_model: int  # L2 norm = RMS * sqrt(d_model)
    mask: np.ndarray  # [B, T] bool, True at real tokens
    input_rms: np.ndarray  # [B, T, S] RMS of h_l, l = 1..L+1
    input_rms_mean: np.ndarray  # [S]
    source_rms: np.ndarray  # [B, T, L+1] RMS of v_i, i = 0..L (v_0 = embedding)
    source_rms_mean: np.ndarray  # [L+1]
    update_ratio: np.ndarray  # [B, T, L] ||v_l|| / ||h_l||: how loud layer l is against its input
    update_ratio_mean: np.ndarray  # [L]
    update_share: (
        np.ndarray
    )  # [B, T, L] <w v_l, h_{l+1}> / ||h_{l+1}||^2, w = weight of the source holding v_l
    update_share_mean: np.ndarray  # [L] (PreNorm: w = 1, the share shrinks with depth)
    carried_rms: np.ndarray  # [B, T, L] RMS of the state carried after layer l: PreNorm the stream
    carried_rms_mean: np.ndarray  # [L]   h_{l+1}, Block the running block sum, Full v_l itself
    block_output_rms: np.ndarray  # [n] carried state after Transformer block i, token mean (Fig. 5b)
    block_update_rms: np.ndarray  # [n] RMS of block i's own update v_{2i-1} + v_{2i}, token mean

    def check(self) -> None:
        """Checks every shape against mask and input_rms."""
        (B, T), S = self.mask.shape, self.input_rms.shape[-1]
        L = S - 1
        shapes = {
            "input_rms": (B, T, S),
            "input_rms_mean": (S,),
            "source_rms": (B, T, L + 1),
            "source_rms_mean": (L + 1,),
            "block_output_rms": (L // 2,),
            "block_update_rms": (L // 2,),
        }
        for name in ("update_ratio", "update_share", "carried_rms"):
            shapes[name], shapes[name + "_mean"] = (B, T, L), (L,)
        for name, shape in shapes.items():
            expect_shape(name, getattr(self, name), shape)


def rms(x: Tensor) -> Tensor:
    """[..., d] -> [...] root mean square over the last axis, in float32."""
    return x.float().pow(2).mean(-1).sqrt()


def stream_norms(model, inputs) -> StreamNorms:
    """Measures signal dilution and per-block output magnitude on a batch of prompts.

    Args:
        model: an ``attnres.Model`` (any residual rule, any device).
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``).

    Returns:
        StreamNorms.
    """
    tr = trace(model, inputs)
    mask, L = tr.batch.mask, tr.n_sites - 1
    h_rms = torch.stack([rms(h) for h in tr.layer_inputs], -1)  # [B, T, S]
    v_rms = torch.stack([rms(v) for v in [tr.embedding, *tr.sublayer_outputs]], -1)  # [B, T, L+1]
    ratio = v_rms[..., 1:] / h_rms[..., :L]
    share = torch.stack([_own_share(tr, l) for l in range(1, L + 1)], -1)  # [B, T, L]
    carried = tr.layer_inputs[1 : L + 1] if tr.residual == "prenorm" else tr.running_block_sums()
    carried_rms = torch.stack([rms(c) for c in carried], -1)  # [B, T, L]
    block_updates = [rms(tr.sublayer_outputs[2 * i] + tr.sublayer_outputs[2 * i + 1]) for i in range(L // 2)]
    block_update_rms = torch.stack(block_updates, -1)
    per_token = {
        "input_rms": h_rms,
        "source_rms": v_rms,
        "update_ratio": ratio,
        "update_share": share,
        "carried_rms": carried_rms,
    }
    arrays = {}
    for name, value in per_token.items():
        arrays[name] = to_numpy(mask_tokens(value, mask))
        arrays[name + "_mean"] = to_numpy(masked_mean(value, mask))
    return StreamNorms(
        residual=tr.residual,
        d_model=model.config.d_model,
        mask=to_numpy(mask),
        **arrays,
        block_output_rms=arrays["carried_rms_mean"][1::2].copy(),
        block_update_rms=to_numpy(masked_mean(block_update_rms, mask)),
    )


def _own_share(tr, l: int) -> Tensor:
    """[B, T] share of h_{l+1} held by v_l itself, with the weight of the source that holds it.

    One source of site l+1 holds v_l (PreNorm and Full: v_l; Block: the partial or completed sum of
    v_l's block), so v_l enters h_{l+1} as w * v_l. In Block the other members of that sum are not
    counted: the share is layer l's own, also at a block's last layer.
    """
    h, k = tr.layer_inputs[l].float(), tr.source_rule.holder(l, l + 1)
    own = tr.weights(l + 1)[..., k : k + 1].float() * tr.sublayer_outputs[l - 1].float()
    return (own * h).sum(-1) / h.pow(2).sum(-1).clamp_min(1e-30)
