"""Retrieval: exact decomposition of h_l, the model's own sources, hand values on the toys."""

import numpy as np
import pytest
import torch

from probes import depth_retrieval, trace
from probes.retrieval import shares

RULES = [("prenorm", None), ("full", None), ("block", 2), ("block", 3)]


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_sources_are_exactly_what_the_model_mixed(make_model, rule, block):
    model = make_model(rule, block)
    recorded = {}

    def recorder(site, sources, weights):
        recorded[site] = sources
        return sources.sum(0) if weights is None else torch.einsum("btk,kbtd->btd", weights, sources)

    with torch.no_grad():
        model(torch.tensor([[1, 2, 3, 4, 5]]), mixer=recorder)
    tr = trace(model, torch.tensor([[1, 2, 3, 4, 5]]))
    for site, sources in recorded.items():
        if rule == "prenorm":  # the model keeps a running sum, the recorder re-sums: rounding only
            torch.testing.assert_close(tr.sources(site), sources, atol=1e-6, rtol=1e-5)
        else:
            assert torch.equal(tr.sources(site), sources)


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_decomposition_sums_to_one_and_rebuilds_h(make_model, rule, block):
    model = make_model(rule, block)
    tr = trace(model, ["abc defgh", "ba"])
    for l in range(1, tr.n_sites + 1):
        torch.testing.assert_close(tr.contributions(l).sum(0), tr.layer_inputs[l - 1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(shares(tr, l).sum(-1), torch.ones(2, 9), atol=1e-5, rtol=0)
    result = depth_retrieval(model, ["abc defgh", "ba"])
    np.testing.assert_allclose(np.nansum(result.share, -1)[result.mask], 1.0, atol=1e-5)


def test_prenorm_toy_shares_by_hand(make_bias_toy):
    model = make_bias_toy("prenorm")
    result = depth_retrieval(model, "abc")
    tr = trace(model, "abc")
    v0_sq = tr.embedding.pow(2).sum(-1)[0].numpy()
    for l in range(1, 8):  # h_l = v_0 + e_1 + .. + e_{l-1}; <e_i, h_l> = 1
        norm_sq = v0_sq + (l - 1)
        np.testing.assert_allclose(result.share[0, :, l - 1, 0], v0_sq / norm_sq, rtol=1e-5)
        for i in range(1, l):
            np.testing.assert_allclose(result.share[0, :, l - 1, i], 1 / norm_sq, rtol=1e-5)
    assert result.strength_kind == "share"
    lower = np.arange(7)[None, :] < np.arange(1, 8)[:, None]  # h_l holds v_0..v_{l-1}, each once
    np.testing.assert_array_equal(result.mixing, np.where(lower, 1.0, np.nan))


def test_forced_reading_tops_the_graph_and_carries_the_norm(make_bias_toy, forcing):
    model = make_bias_toy("full")
    forcing(model, 5, "L2")
    result = depth_retrieval(model, ["abcd", "hg"], top_k=2)
    assert result.top_labels[4][0] == "L2" and result.top_sources[4, 0] == 2
    assert result.weight_mean[4, 2] == pytest.approx(1.0, abs=1e-6)
    assert result.weighted_norm_mean[4, 2] == pytest.approx(0.25, abs=1e-6)  # alpha * rms(e_2)
    assert result.share_mean[4, 2] == pytest.approx(1.0, abs=1e-5)
    assert result.top_sources[0].tolist() == [0, -1] and result.top_labels[0] == ("emb",)


def test_block_mixing_spreads_block_weights_over_their_layers(make_bias_toy):
    result = depth_retrieval(make_bias_toy("block", 2), "ab")  # zero queries: uniform over sources
    # site 4 reads emb, B1 = v1 + v2, partial = v3, each with weight 1/3
    np.testing.assert_allclose(result.mixing[3, :4], [1 / 3] * 4, atol=1e-6)
    assert np.isnan(result.mixing[3, 4:]).all()
    # the readout reads emb, B1, B2, B3 with weight 1/4 each, spread over v_0..v_6
    np.testing.assert_allclose(result.mixing[6], [0.25] * 7, atol=1e-6)
