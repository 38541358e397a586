"""Logit lens: the readout site is the model's output exactly."""

import numpy as np
import pytest
import torch

from probes import logit_lens, make_batch, trace
from probes.lens import lens_stats

RULES = [("prenorm", None), ("full", None), ("block", 2), ("block", 3)]


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_readout_site_reproduces_the_models_logits(make_model, rule, block):
    model = make_model(rule, block)
    batch = make_batch(model, ["abc defg", "hh"])
    tr = trace(model, batch)
    sequential = model(batch.tokens, depth_impl="sequential").logits
    assert torch.equal(model.readout(tr.layer_inputs[-1]), sequential)
    torch.testing.assert_close(tr.logits, model(batch.tokens).logits, atol=1e-5, rtol=1e-5)
    result = logit_lens(model, batch, top_k=3)
    real = result.mask
    assert (result.kl_to_final[:, :, -1][real] == 0).all()
    top = sequential.softmax(-1).topk(3)
    np.testing.assert_array_equal(result.top_ids[:, :, -1][real], top.indices[batch.mask].numpy())
    ranks = result.target_rank[:, :, -1]
    assert (ranks[~real] == -1).all() and (ranks[0, -1] == -1)


def test_lens_statistics_by_hand(make_model):
    model = make_model("full")
    h = torch.zeros(1, 2, 16)  # a zero state reads as the uniform distribution
    final = torch.tensor([0.0, 1.0] + [0.0] * 8).log_softmax(-1).expand(1, 2, 10)
    with torch.no_grad():
        stats = lens_stats(model, h, final, torch.tensor([[3, -1]]), k=2)
    np.testing.assert_allclose(stats["entropy"].numpy(), np.log(10), rtol=1e-6)
    p = final[0, 0].exp()
    np.testing.assert_allclose(
        stats["kl_to_final"][0, 0].item(), (p * (p.log() + np.log(10))).sum().item(), rtol=1e-5
    )
    assert stats["target_rank"].tolist() == [[0, -1]]
    assert stats["target_logprob"][0, 0].item() == pytest.approx(-np.log(10), rel=1e-6)


def test_source_lens_covers_every_source(make_model):
    result = logit_lens(make_model("block", 2), "abcd")
    assert result.source_entropy.shape == (1, 4, 7) and result.entropy_mean.shape == (7,)
    assert np.isfinite(result.kl_mean).all() and result.kl_mean[-1] == 0
