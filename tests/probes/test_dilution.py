"""Dilution metrics: by hand on the bias toy (v_l = e_l), and read off the probes they summarise."""

import numpy as np
import pytest

from probes import dilution_metrics, gradient_norms, make_batch, stream_norms


def test_prenorm_toy_metrics_by_hand(make_bias_toy):
    model = make_bias_toy("prenorm", n_layer=4)  # L = 8
    result = dilution_metrics(model, "abcd")
    v0 = model.wte.weight[make_batch(model, "abcd").tokens[0]] + model.wpe.weight[:4]
    v0_sq = v0.pow(2).sum(-1).detach().numpy()  # orthogonal to every e_l: ||h_l||^2 = ||v_0||^2 + l - 1
    rms = lambda l: np.sqrt((v0_sq + l - 1) / 16).mean()  # noqa: E731
    assert result.growth == pytest.approx(rms(8) / rms(2), rel=1e-5)
    share = np.mean([np.mean(1 / (v0_sq + l)) for l in range(5, 9)])  # v_l's share of h_{l+1}
    assert result.deeper_half_share == pytest.approx(share, rel=1e-5)
    assert result.output_depth_spearman == pytest.approx(1.0)  # the stream grows block by block
    assert (result.n_sublayers, result.tokens, result.residual) == (8, 4, "prenorm")


@pytest.mark.parametrize(("rule", "block"), [("prenorm", None), ("full", None), ("block", 2)])
def test_metrics_are_read_off_the_probes(make_model, rule, block):
    model = make_model(rule, block)
    result = dilution_metrics(model, ["abc defg", "hg fe"])
    norms, grads = stream_norms(model, ["abc defg", "hg fe"]), gradient_norms(model, ["abc defg", "hg fe"])
    assert result.growth == pytest.approx(norms.input_rms_mean[5] / norms.input_rms_mean[1], rel=1e-6)
    assert result.deeper_half_share == pytest.approx(norms.update_share_mean[3:].mean(), rel=1e-6)
    ranks = np.argsort(np.argsort(norms.block_output_rms))  # no ties in random models
    expected = np.corrcoef(np.arange(3), ranks)[0, 1]
    assert result.output_depth_spearman == pytest.approx(expected, abs=1e-9)
    ratio = grads.block_param_grad_norm[0] / grads.block_param_grad_norm[-1]
    assert result.gradient_first_last == pytest.approx(ratio, rel=1e-6)
    assert result.tokens == 13


def test_one_block_has_no_deeper_half(make_model):
    with pytest.raises(ValueError, match="two Transformer blocks"):
        dilution_metrics(make_model(n_layer=1), "abc")


def test_the_committed_table_is_what_the_shipped_models_measure():
    """sample_models/dilution.json (quoted in sample_models/README.md) against a fresh measurement."""
    import json
    from pathlib import Path

    import torch

    from attnres import load_model
    from attnres.data import held_out_passage

    root = Path(__file__).resolve().parents[2]
    rows = {r["model"]: r for r in json.loads((root / "sample_models" / "dilution.json").read_text())}
    for rule in ("prenorm", "full", "block"):
        model = load_model(root / "sample_models" / f"shakespeare-{rule}")
        scene = torch.tensor([model.tokenizer.encode(held_out_passage(model.config.block_size))])
        result = dilution_metrics(model, scene)
        row = rows[f"sample_models/shakespeare-{rule}"]
        for field in ("growth", "deeper_half_share", "output_depth_spearman", "gradient_first_last"):
            assert getattr(result, field) == pytest.approx(row[f"hamlet_{field}"], abs=6e-4), (rule, field)
