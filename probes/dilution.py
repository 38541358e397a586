"""Signal dilution in four numbers: how much the stream grows, how little a deep layer is heard.

These are the headline metrics of the model cards and of the depth series, each read from the
stream-norm and gradient probes on the same inputs:

- ``growth`` = RMS(h_L) / RMS(h_2): the stream grows from the input of the first MLP to the input of
  the last sublayer (h_1 is the bare embedding, and the first attention layer alone can multiply it,
  so it is left out).
- ``deeper_half_share``: the mean, over the deeper half of the layers (l > L/2), of layer l's own
  share of the next input h_{l+1} (``StreamNorms.update_share``). Uniform over L layers would be
  about 1/L; PreNorm's shrinks as the stream grows.
- ``output_depth_spearman``: Spearman's rank correlation of the per-block output magnitude (paper
  Fig. 5b, ``StreamNorms.block_output_rms``) with depth: 1 when it grows monotonically.
- ``gradient_first_last``: gradient norm of Transformer block 1's parameters over block n's (paper
  Fig. 5c): the earliest blocks' gradients against the last's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import ProbeResult, trace
from .gradients import gradient_norms
from .norms import stream_norms


@dataclass(frozen=True)
class DilutionMetrics(ProbeResult):
    """The four headline numbers of signal dilution for one model on one batch (see module doc)."""

    residual: str  # "prenorm" | "full" | "block"
    n_sublayers: int  # L
    tokens: int  # real tokens the numbers rest on
    growth: float  # RMS(h_L) / RMS(h_2), token means
    deeper_half_share: float  # mean of update_share_mean over layers l = L//2 + 1 .. L
    output_depth_spearman: float  # Spearman rho of block_output_rms with the block index
    gradient_first_last: float  # block_param_grad_norm[0] / block_param_grad_norm[-1]


def stream_dilution(norms) -> tuple[float, float]:
    """(growth, deeper_half_share) of a ``StreamNorms`` result (see the module docstring)."""
    L = len(norms.update_share_mean)
    if L < 4:
        raise ValueError(f"dilution metrics need at least two Transformer blocks, the model has {L // 2}")
    growth = float(norms.input_rms_mean[L - 1] / norms.input_rms_mean[1])
    return growth, float(np.mean(norms.update_share_mean[L // 2 :]))


def dilution_metrics(model, inputs) -> DilutionMetrics:
    """Measures the four headline numbers of signal dilution (stream norms, then one backward).

    Args:
        model: an ``attnres.Model`` with at least two Transformer blocks.
        inputs: text, Prompt(s), a Batch or token ids (see ``make_batch``); at least two tokens.

    Returns:
        DilutionMetrics.
    """
    if model.config.n_layer < 2:
        raise ValueError(
            f"dilution metrics need at least two Transformer blocks, the model has {model.config.n_layer}"
        )
    from scipy.stats import spearmanr  # noqa: PLC0415 (scipy.stats takes a second to import)

    tr = trace(model, inputs)
    norms, grads = stream_norms(model, tr), gradient_norms(model, tr.batch)
    growth, share = stream_dilution(norms)
    rho = spearmanr(np.arange(len(norms.block_output_rms)), norms.block_output_rms).statistic
    return DilutionMetrics(
        residual=norms.residual,
        n_sublayers=model.config.n_sublayers,
        tokens=int(norms.mask.sum()),
        growth=growth,
        deeper_half_share=share,
        output_depth_spearman=float(rho),
        gradient_first_last=float(grads.block_param_grad_norm[0] / grads.block_param_grad_norm[-1]),
    )
