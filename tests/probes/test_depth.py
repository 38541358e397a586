"""Depth weights and sinks, against hand-set toys and the model's own internals."""

import numpy as np
import pytest
import torch

from probes import DepthWeights, depth_sinks, depth_weights, make_batch

RULES = [("prenorm", None), ("full", None), ("block", 2), ("block", 3)]


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_weights_match_the_models_internals(make_model, rule, block):
    model = make_model(rule, block)
    result = depth_weights(model, ["abc defg", "hha"])
    batch = make_batch(model, ["abc defg", "hha"])
    it = model(batch.tokens, return_internals=True).internals
    assert result.sources == tuple(it.depth_sources)
    for l, labels in enumerate(it.depth_sources, start=1):
        k = len(labels)
        expected = torch.ones(2, 8, k) if it.depth_weights is None else it.depth_weights[l - 1]
        got = torch.tensor(result.per_token[:, :, l - 1, :k])
        torch.testing.assert_close(got[batch.mask], expected[batch.mask], atol=1e-5, rtol=0)
        assert np.isnan(result.per_token[:, :, l - 1, k:]).all()
    if rule != "prenorm":
        np.testing.assert_allclose(np.nansum(result.mean, -1), 1.0, atol=1e-5)


def test_fresh_full_model_is_uniform_with_maximal_entropy(make_model):
    model = make_model("full")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("res.query"):
                p.zero_()
    result = depth_weights(model, "abcab")
    counts = np.arange(1, 8)  # site l reads K_l = l sources (readout: 7)
    for row, k in enumerate(counts):
        np.testing.assert_allclose(result.mean[row, :k], 1.0 / k, atol=1e-6)
        np.testing.assert_allclose(result.std[row, :k], 0.0, atol=1e-6)
    np.testing.assert_allclose(result.entropy, np.log(counts), atol=1e-5)


@pytest.mark.parametrize(
    ("rule", "block", "site", "label"),
    [
        ("full", None, 4, "L1"),
        ("full", None, 6, "L5"),
        ("full", None, 7, "emb"),
        ("block", 2, 4, "B1"),
        ("block", 2, 6, "partial"),
        ("block", 2, 7, "B2"),
    ],
)
def test_a_query_that_forces_a_source_is_reported_exactly(make_bias_toy, forcing, rule, block, site, label):
    model = make_bias_toy(rule, block)
    if label == "emb":
        with torch.no_grad():
            model.wte.weight[:, 0] = 1.0  # every token's embedding now points along e_0
        direction = torch.zeros(model.config.d_model)
        direction[0] = 20.0
        with torch.no_grad():
            model.site(site).query.copy_(direction)
    else:
        forcing(model, site, label)
    result = depth_weights(model, ["abcdef", "ba"])
    k = result.sources[site - 1].index(label)
    assert result.mean[site - 1, k] == pytest.approx(1.0, abs=1e-6)
    assert result.quantiles[0, site - 1, k] == pytest.approx(1.0, abs=1e-6)
    assert result.entropy[site - 1] < 1e-5


def test_views_split_pre_attention_and_pre_mlp_sites(make_model):
    result = depth_weights(make_model("block", 3), "abcd")
    attn, mlp, readout = result.view("attn"), result.view("mlp"), result.view("readout")
    assert attn.sites.tolist() == [1, 3, 5] and mlp.sites.tolist() == [2, 4, 6]
    assert readout.sources == (("emb", "B1", "B2"),)
    np.testing.assert_array_equal(mlp.mean, result.mean[[1, 3, 5], : mlp.mean.shape[1]])
    assert isinstance(attn, DepthWeights)


def test_sinks_are_sources_read_whatever_the_prompt(make_bias_toy):
    model = make_bias_toy("full")
    with torch.no_grad():
        model.wte.weight[:, 0] = 1.0
        for l in range(1, 8):
            model.site(l).query.zero_()
        model.site(5).query[0] = 20.0  # site 5 always reads the embedding
    results = [depth_weights(model, text) for text in ("abcdef", "hgf", "a b c")]
    sinks = depth_sinks(results)
    assert list(zip(sinks.sites.tolist(), sinks.labels, strict=True)) == [(5, "emb")]
    assert sinks.mean[0] == pytest.approx(1.0, abs=1e-6) and sinks.prompt_std[0] < 1e-6


def test_prenorm_has_no_sinks(make_model):
    assert depth_sinks(depth_weights(make_model("prenorm"), "abc")).labels == ()
