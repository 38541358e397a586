"""The model's own loss on a prompt: mean next-token cross-entropy, read off one traced forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import next_token_targets, trace


@torch.no_grad()
def prompt_loss(model, inputs) -> float | None:
    """Mean next-token cross-entropy (nats) of the model on the prompt.

    Position t predicts token t+1; the last (and every padded) position has no target. Read off the
    logits of ``trace``, so a Trace shared with other probes costs no second forward pass.

    Args:
        model: an ``attnres.Model``.
        inputs: anything ``trace`` accepts (text, prompts, a Batch, ids, or a Trace of this model).

    Returns:
        The loss as a float, or None when no position has a next token (a one-token prompt).
    """
    traced = trace(model, inputs)
    targets = next_token_targets(traced.batch)  # [B, T], -1 where there is no next token
    if not bool((targets >= 0).any()):
        return None
    logits = traced.logits.float()
    return float(F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1))
