"""Gradient norms: an independent backward() on a copy of the model; the shared model keeps no grads."""

import copy

import numpy as np
import pytest
import torch

from probes import PromptError, gradient_norms, make_batch
from probes._common import next_token_targets

RULES = [("prenorm", None), ("full", None), ("block", 2)]


def _independent(model, text):
    """backward() on a copy, each h_l read where it enters its PreNorm (no mixer involved).

    In PreNorm that tensor is the carried stream itself, so its gradient collects every later use.
    """
    clone = copy.deepcopy(model)
    batch = make_batch(clone, text)
    norms = [n for b in clone.blocks for n in (b.attn_norm, b.mlp_norm)] + [clone.final_norm]
    kept = []

    def keep(module, args):
        args[0].retain_grad()
        kept.append(args[0])

    handles = [n.register_forward_pre_hook(keep) for n in norms]
    loss = clone(batch.tokens, targets=next_token_targets(batch), depth_impl="sequential").loss
    loss.backward()
    for handle in handles:
        handle.remove()
    assert len(kept) == len(norms)
    blocks = [torch.cat([p.grad.flatten() for p in b.parameters()]).norm().item() for b in clone.blocks]
    return loss.item(), blocks, [h.grad[0].norm(dim=-1).numpy() for h in kept]


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_gradients_match_an_independent_backward(make_model, rule, block):
    model = make_model(rule, block)
    result = gradient_norms(model, "abc defg")
    loss, blocks, per_site = _independent(model, "abc defg")
    assert result.loss == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(result.block_param_grad_norm, blocks, rtol=1e-4)
    np.testing.assert_allclose(result.stream_grad_norm[0], np.stack(per_site, -1), rtol=1e-4, atol=1e-9)
    assert all(p.grad is None for p in model.parameters())


def test_gradients_leave_the_shared_model_untouched(make_model):
    model = make_model("full")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # works even when the caller disabled grad
        result = gradient_norms(model, ["abcdef", "hg"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert np.isnan(result.stream_grad_norm[1, 2:]).all() and result.embedding_grad_norm > 0


def test_a_single_token_has_nothing_to_predict(make_model):
    with pytest.raises(PromptError, match="two tokens"):
        gradient_norms(make_model(), "a")
