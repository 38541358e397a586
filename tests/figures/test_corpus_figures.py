"""Corpus figures: each builder draws the corpus statistics it is given, under the right labels."""

import numpy as np
import pytest
import torch

import figures.corpus as FC
import probes
from probes.corpus import Sequences, SweepSettings, corpus_diff, corpus_sinks, corpus_sweep, prompt_vs_corpus


@pytest.fixture(scope="module")
def corpus_stats(tiny_models):
    tokens = torch.randint(0, 21, (6, 20), generator=torch.Generator().manual_seed(0))
    seqs = Sequences.from_tokens(tokens)
    return {name: corpus_sweep(m, seqs, SweepSettings(batch_size=3)) for name, m in tiny_models.items()}


def test_heatmap_cells_are_the_corpus_means_and_spreads(corpus_stats):
    full, block = corpus_stats["full"], corpus_stats["block"]
    fig = FC.corpus_heatmaps([full, block], ["f", "b"])
    np.testing.assert_allclose(np.array(fig.data[0].z, dtype=float), full.alpha.seq_mean, equal_nan=True)
    z = np.array(fig.data[1].z, dtype=float)
    columns = list(fig.data[1].x)
    for row, labels in enumerate(block.sources):  # each weight under its own label
        for k, label in enumerate(labels):
            assert z[row, columns.index(label)] == pytest.approx(block.alpha.seq_mean[row, k])
    spread = FC.corpus_heatmaps([full], ["f"], view="seq_std", panel="mlp")
    rows = [i for i, k in enumerate(full.kinds) if k == "mlp"]
    z = np.array(spread.data[0].z, dtype=float)  # the pre-MLP panel needs fewer columns
    np.testing.assert_allclose(z, full.alpha.seq_std[rows][:, : z.shape[1]], equal_nan=True)
    assert "6 sequences · 120 tokens" in spread.layout.title.subtitle.text
    with pytest.raises(ValueError, match="view"):
        FC.corpus_heatmaps([full], ["f"], view="median")


def test_band_chart_draws_the_mean_and_its_interval(corpus_stats):
    stats = list(corpus_stats.values())
    fig = FC.band_chart(stats, list(corpus_stats), "input_rms", "RMS", "site", "RMS", log_y=True)
    band, line = fig.data[0], fig.data[1]
    est = stats[0].input_rms
    np.testing.assert_allclose(np.array(line.y, dtype=float), est.seq_mean, rtol=1e-12)
    n = len(est.seq_mean)
    np.testing.assert_allclose(np.array(band.y[:n], dtype=float), est.seq_mean + est.ci_half, rtol=1e-12)
    np.testing.assert_allclose(
        np.array(band.y[n:], dtype=float), (est.seq_mean - est.ci_half)[::-1], rtol=1e-12
    )
    assert fig.layout.yaxis.type == "log"
    collapse = FC.collapse_chart(stats, list(corpus_stats))
    assert list(collapse.data[-1].y) == pytest.approx(stats[0].uniform_weight.tolist())


def test_prompt_sinks_and_diff_figures(tiny_models, corpus_stats):
    full = corpus_stats["full"]
    pvc = prompt_vs_corpus(probes.depth_weights(tiny_models["full"], "the <b>cat</b>"), full)
    fig = FC.prompt_vs_corpus_heatmap(pvc, "<i>m</i>")
    np.testing.assert_allclose(np.array(fig.data[0].z, dtype=float), np.clip(pvc.z, -6, 6), equal_nan=True)
    assert len(fig.data[1].x) == int(pvc.unusual.sum()) and "&lt;i&gt;" in fig.layout.title.text
    sinks = corpus_sinks(full, min_mean=0.0, max_std=1.0)
    rows = FC.corpus_sinks_table(sinks)
    assert len(rows) == len(sinks.labels) and rows[0]["mean weight"] == round(float(sinks.mean[0]), 4)
    diff = corpus_diff(corpus_stats["prenorm"], full)
    heat = FC.corpus_diff_heatmap(diff, ["p", "f"])
    z = np.array(heat.data[0].z, dtype=float)
    assert np.isnan(z[~diff.alpha_differs]).all()
    np.testing.assert_allclose(z[diff.alpha_differs], diff.alpha[diff.alpha_differs])
    assert len(FC.corpus_diff_table(diff)) == len(diff.largest)
    FC.alpha_rms_chart([full], ["f"])
