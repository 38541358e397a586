"""Gate attribution: completeness, the model at gates = 1, and zero credit for unread sources."""

import numpy as np
import pytest
import torch

from probes import gate_attribution, make_batch

RULES = [("prenorm", None), ("full", None), ("block", 2)]


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_completeness_and_gates_one_is_the_model(make_model, rule, block):
    model = make_model(rule, block, n_layer=2)
    result = gate_attribution(model, ["abcde", "hg"], n_steps=64)
    total = np.nansum(result.attribution, axis=(1, 2))
    np.testing.assert_allclose(total, result.logprob_model - result.logprob_baseline, atol=2e-3)
    np.testing.assert_allclose(
        result.convergence_delta, total - (result.logprob_model - result.logprob_baseline), atol=1e-4
    )
    logits = model(make_batch(model, ["abcde", "hg"]).tokens).logits
    logprobs = logits[[0, 1], [4, 1]].log_softmax(-1)
    assert result.positions.tolist() == [4, 1]
    np.testing.assert_array_equal(result.targets, logprobs.argmax(-1).numpy())  # default: top-1
    np.testing.assert_allclose(result.logprob_model, logprobs.max(-1).values.detach().numpy(), atol=1e-5)
    # with every gate closed, h = 0 at the readout: a uniform distribution
    np.testing.assert_allclose(result.logprob_baseline, -np.log(model.config.vocab_size), atol=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_sources_a_forced_site_does_not_read_get_no_credit(make_bias_toy, forcing):
    model = make_bias_toy("full")
    forcing(model, 7, "L6")  # the readout reads only v_6 = e_6
    with torch.no_grad():
        model.wte.weight[3, 6] = 1.0  # the tied head sees e_6 as token 3 ("d", absent from the prompt)
    result = gate_attribution(model, "abc", targets=3, n_steps=32)
    assert result.targets.tolist() == [3] and result.weight[0, 6, 6] == pytest.approx(1.0, abs=1e-6)
    others = np.delete(result.attribution[0, 6, :7], 6)
    assert np.abs(others).max() < 1e-6 and abs(result.attribution[0, 6, 6]) > 1e-3
