"""Stream norms: hand values on the bias toy (v_l = e_l), and the model's internals on random models."""

import math

import numpy as np
import pytest
import torch

from probes import make_batch, stream_norms

RULES = [("prenorm", None), ("full", None), ("block", 2), ("block", 3)]


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_norms_match_the_internals(make_model, rule, block):
    model = make_model(rule, block)
    result = stream_norms(model, "abc defg")
    it = model(make_batch(model, "abc defg").tokens, return_internals=True).internals
    expected = torch.stack([h.pow(2).mean(-1).sqrt() for h in it.layer_inputs], -1)[0]
    np.testing.assert_allclose(result.input_rms[0], expected.numpy(), rtol=1e-5)
    v = torch.stack([x.pow(2).mean(-1).sqrt() for x in [it.embedding, *it.sublayer_outputs]], -1)[0]
    np.testing.assert_allclose(result.source_rms[0], v.numpy(), rtol=1e-5)
    np.testing.assert_allclose(result.update_ratio[0], (v[:, 1:] / expected[:, :-1]).numpy(), rtol=1e-5)


def test_prenorm_update_share_shrinks_exactly_as_computed_by_hand(make_bias_toy):
    model = make_bias_toy("prenorm")
    result = stream_norms(model, "abcd")
    v0 = model.wte.weight[make_batch(model, "abcd").tokens[0]] + model.wpe.weight[:4]
    v0_sq = v0.pow(2).sum(-1).detach().numpy()  # v_0 is orthogonal to every e_l
    for l in range(1, 7):  # h_{l+1} = v_0 + e_1 + ... + e_l, so v_l's share is 1 / (||v_0||^2 + l)
        np.testing.assert_allclose(result.update_share[0, :, l - 1], 1 / (v0_sq + l), rtol=1e-5)
        np.testing.assert_allclose(result.carried_rms[0, :, l - 1], np.sqrt((v0_sq + l) / 16), rtol=1e-5)
    assert np.all(np.diff(result.update_share_mean) < 0)


@pytest.mark.parametrize(("rule", "block"), [("full", None), ("block", 2), ("block", 3)])
def test_attnres_update_share_is_layer_ls_own(make_bias_toy, rule, block):
    model = make_bias_toy(rule, block)
    result = stream_norms(model, "abcd")
    v0 = model.wte.weight[make_batch(model, "abcd").tokens[0]] + model.wpe.weight[:4]
    v0_sq = v0.pow(2).sum(-1).detach().numpy()
    # zero queries: h_{l+1} = (v_0 + b_1 + ..) / K with v_l = e_l orthonormal and in one source only, so
    # <v_l / K, h_{l+1}> / ||h_{l+1}||^2 = 1 / (||v_0||^2 + l), also at a block's end (not the block's share)
    for l in range(1, 7):
        np.testing.assert_allclose(result.update_share[0, :, l - 1], 1 / (v0_sq + l), rtol=1e-5)


def test_block_carried_state_is_a_saw_tooth(make_bias_toy):
    result = stream_norms(make_bias_toy("block", 2), "abcd")
    unit = 1 / math.sqrt(16)  # rms(e_l)
    expected = [unit, math.sqrt(2) * unit] * 3  # the running block sum resets every 2 sublayers
    np.testing.assert_allclose(result.carried_rms_mean, expected, rtol=1e-6)
    np.testing.assert_allclose(result.block_output_rms, [math.sqrt(2) * unit] * 3, rtol=1e-6)
    np.testing.assert_allclose(result.block_update_rms, [math.sqrt(2) * unit] * 3, rtol=1e-6)


def test_full_toy_inputs_are_uniform_averages(make_bias_toy):
    model = make_bias_toy("full")
    result = stream_norms(model, "ab")
    # site l >= 2 averages v_0, e_1..e_{l-1} with weight 1/l: h_l = (v_0 + e_1 + .. + e_{l-1}) / l
    v0 = (model.wte.weight[make_batch(model, "ab").tokens[0]] + model.wpe.weight[:2]).detach()
    for l in range(1, 8):
        expected = ((v0.pow(2).sum(-1) + (l - 1)) / 16).sqrt() / l
        np.testing.assert_allclose(result.input_rms[0, :, l - 1], expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(result.carried_rms_mean, 0.25, rtol=1e-6)  # Full carries v_l = e_l
