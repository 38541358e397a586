"""The probe registry: every traced probe gives the same numbers from a shared trace as alone, the
prompt loss is the model's own cross-entropy, and the depth-parameter summary reads the weights."""

import math

import numpy as np
import pytest
import torch

from probes import PROBES, TRACED, depth_parameter_summary, make_batch, prompt_loss, trace

RULES = [("prenorm", None), ("full", None), ("block", 2)]
TEXT = "abc defg ha"
PARAMS = {"gate_attribution": {"n_steps": 4}, "route_ablation": {"site": 3}}


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_every_traced_probe_is_the_same_from_a_shared_trace(make_model, rule, block):
    model = make_model(rule, block)
    shared = trace(model, TEXT)
    for name in sorted(TRACED):
        alone = PROBES[name](model, TEXT, **PARAMS.get(name, {}))
        together = PROBES[name](model, shared, **PARAMS.get(name, {}))
        if hasattr(alone, "to_dict"):
            alone, together = alone.to_dict(), together.to_dict()
        assert together == alone, name


@pytest.mark.parametrize(("rule", "block"), RULES)
def test_prompt_loss_is_the_mean_next_token_cross_entropy(make_model, rule, block):
    model = make_model(rule, block)
    ids = make_batch(model, TEXT).tokens  # [1, T]
    with torch.no_grad():
        logits = model(ids).logits[0].double()  # [T, vocab]
    logp = logits - logits.exp().sum(-1, keepdim=True).log()
    by_hand = -float(np.mean([logp[t, ids[0, t + 1]].item() for t in range(ids.shape[1] - 1)]))
    assert prompt_loss(model, TEXT) == pytest.approx(by_hand, rel=1e-5)
    with torch.no_grad():
        own = float(model(ids[:, :-1], targets=ids[:, 1:]).loss)
    assert prompt_loss(model, TEXT) == pytest.approx(own, rel=1e-5)
    assert prompt_loss(model, "a") is None  # one token: nothing to predict


def test_depth_parameter_summary_reads_the_named_parameters(make_model):
    model = make_model("block", 2)
    weights = model.state_dict()
    n_layer = model.config.n_layer
    names = [f"blocks.{i}.{kind}_res" for i in range(n_layer) for kind in ("attn", "mlp")] + ["out_res"]
    with torch.no_grad():
        weights["blocks.1.mlp_res.query"].zero_()  # site 4: an untrained query has no direction
    queries = np.stack([weights[f"{n}.query"].numpy() for n in names])  # [L+1, d], DESIGN.md §2 names
    rows, cosine = depth_parameter_summary(model)
    assert [r["site"] for r in rows][:3] == ["l=1 attn", "l=2 mlp", "l=3 attn"]
    assert rows[-1]["site"] == f"l={2 * n_layer + 1} readout"
    np.testing.assert_allclose([r["query norm"] for r in rows], np.linalg.norm(queries, axis=1), rtol=1e-6)
    gains = [float(weights[f"{n}.norm.weight"].mean()) for n in names]
    np.testing.assert_allclose([r["key gain mean"] for r in rows], gains, rtol=1e-6)
    i, j = 0, 2
    expected = queries[i] @ queries[j] / np.linalg.norm(queries[i]) / np.linalg.norm(queries[j])
    assert cosine[i][rows[j]["site"]] == pytest.approx(round(float(expected), 3), abs=1e-9)
    assert all(math.isnan(v) for k, v in cosine[3].items() if k != "site")
    assert depth_parameter_summary(make_model("prenorm")) == ([], [])
