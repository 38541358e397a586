"""Norm, gradient, retrieval, attribution, lens and training-dynamics figures against probe numbers."""

from pathlib import Path

import numpy as np
import pytest

import figures
import probes
from figures.retrieval import arcs, strengths

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


def test_norm_charts_plot_the_probe_numbers(shipped_results):
    names = list(shipped_results)
    norms = [shipped_results[n]["norms"] for n in names]
    growth = figures.norm_growth_chart(norms, names)
    assert growth.layout.yaxis.type == "log"
    assert growth.layout.yaxis.title.text == "RMS(h_l)"
    np.testing.assert_allclose(growth.data[0].y, norms[0].input_rms_mean, rtol=1e-6)
    assert [t.line.color for t in growth.data] == ["#7f7f7f", "#1f77b4", "#ff7f0e"]
    assert figures.norm_growth_chart(norms, names, log_y=False).layout.yaxis.type != "log"
    fig5b = figures.block_output_chart(norms, names)
    assert fig5b.layout.title.text.startswith("Fig. 5b")
    assert fig5b.layout.xaxis.title.text == "Transformer block"
    np.testing.assert_allclose(fig5b.data[2].y, norms[2].block_output_rms, rtol=1e-6)
    for quantity in ("PreNorm: the stream h", "Block: the running block sum", "Full: its MLP output"):
        assert quantity in fig5b.layout.title.subtitle.text
    assert "Full" not in figures.block_output_chart(norms[:1], names[:1]).layout.title.subtitle.text
    ratio, share = figures.update_ratio_chart(norms, names), figures.update_share_chart(norms, names)
    np.testing.assert_allclose(ratio.data[1].y, norms[1].update_ratio_mean, rtol=1e-6)
    np.testing.assert_allclose(share.data[0].y, norms[0].update_share_mean, rtol=1e-6)
    grads = [shipped_results[n]["grads"] for n in names]
    fig5c = figures.gradient_chart(grads, names)
    assert fig5c.layout.title.text.startswith("Fig. 5c") and fig5c.layout.yaxis.type == "log"
    np.testing.assert_allclose(fig5c.data[0].y, grads[0].block_param_grad_norm, rtol=1e-6)
    with pytest.raises(ValueError):
        figures.norm_growth_chart(norms, names[:2])


@pytest.mark.parametrize("name", ["prenorm", "full", "block"])
def test_threshold_removes_weak_arcs(shipped_results, name):
    retrieval = shipped_results[name]["retrieval"]
    table = strengths(retrieval)
    for threshold in (0.0, 0.1, 0.3):
        fig = figures.retrieval_graph(retrieval, threshold, name)
        drawn = [t.meta["strength"] for t in fig.data if isinstance(t.meta, dict) and t.meta.get("arc")]
        assert len(drawn) == int((np.abs(table[np.isfinite(table)]) > threshold).sum())
        assert all(abs(s) > threshold for s in drawn)
    assert "Who reads whom" in fig.layout.title.text


def test_block_sources_sit_at_their_block_and_are_labelled(shipped_results):
    retrieval = shipped_results["block"]["retrieval"]  # 16 sublayers, 4 per block
    placed = {(a["source"], a["site"]): a["x0"] for a in arcs(retrieval, -1.0)}
    assert placed[("B1", 5)] == 4 and placed[("B3", 17)] == 12 and placed[("B4", 17)] == 16
    assert placed[("partial", 7)] == 6 and placed[("emb", 9)] == 0
    fig = figures.retrieval_graph(retrieval, 0.1, "block")
    assert "<b>B2</b>" in fig.layout.xaxis.ticktext[8]


def test_mixing_matrix_is_fig9(shipped_results):
    pre = figures.mixing_matrix(shipped_results["prenorm"]["retrieval"], "prenorm")
    z = np.asarray(pre.data[0].z, dtype=np.float64)
    np.testing.assert_array_equal(z[np.tril_indices(17)], 1.0)
    assert np.isnan(z[np.triu_indices(17, 1)]).all()
    block = shipped_results["block"]["retrieval"]
    fig = figures.mixing_matrix(block, "block")
    np.testing.assert_array_equal(
        np.asarray(fig.data[0].z, dtype=np.float64), block.mixing.astype(np.float64)
    )
    assert fig.layout.title.text.startswith("Fig. 9")
    rows = figures.retrieval_summary([block], ["block"])
    assert len(rows) == 17 and rows[-1]["site"] == "L17 (readout)" and "top 3" in rows[-1]


def test_attribution_figures(tiny_results):
    attr = tiny_results["block"]["attribution"]
    fig = figures.attribution_vs_weight(attr, 3)
    k = len(attr.sources[2])
    np.testing.assert_allclose(fig.data[0].y, attr.weight[0, 2, :k], rtol=1e-6)
    np.testing.assert_allclose(fig.data[1].y, attr.attribution[0, 2, :k], rtol=1e-6)
    assert fig.layout.barmode == "group" and fig.data[1].yaxis == "y2"
    assert "not additive" not in fig.layout.title.subtitle.text  # no occlusion bars, nothing to tell apart
    heat = figures.attribution_heatmap(tiny_results["full"]["attribution"])
    full = tiny_results["full"]["attribution"]
    np.testing.assert_array_equal(
        np.asarray(heat.data[0].z, dtype=np.float64), full.attribution[0].astype(float)
    )
    assert heat.data[0].zmid == 0.0
    with pytest.raises(ValueError, match="site"):
        figures.attribution_vs_weight(attr, 99)


def test_attribution_chart_with_single_route_ablation(tiny_models, tiny_results):
    attr = tiny_results["block"]["attribution"]
    ablation = probes.route_ablation(tiny_models["block"], "ab <script>\nc d", 3)
    fig = figures.attribution_vs_weight(attr, 3, ablation=ablation)
    assert [d.name for d in fig.data][2] == "occlusion: route alone at its mean (Δ log p)"
    assert fig.data[2].yaxis == "y2" and "not additive" in fig.layout.title.subtitle.text
    np.testing.assert_allclose(fig.data[2].y, ablation.effect[0], rtol=1e-6)
    low, high = fig.layout.yaxis2.range
    values = np.concatenate([attr.attribution[0, 2, : len(ablation.sources)], ablation.effect[0]])
    assert low <= values.min() and high >= values.max()
    with pytest.raises(ValueError, match="ablation is of site 3"):
        figures.attribution_vs_weight(attr, 4, ablation=ablation)


def test_ablation_chart_and_table(tiny_models):
    model, text = tiny_models["full"], "ab <c d"
    results = [
        probes.ablate(model, text, 3, "uniform"),
        probes.ablate(model, text, 5, "zero_source", source="emb"),
    ]
    fig = figures.ablation_chart(results)
    assert list(fig.data[0].x) == ["L3 uniform", "L5 zero_source emb"]
    np.testing.assert_allclose(fig.data[0].y, [r.delta_loss for r in results], rtol=1e-9)
    assert fig.layout.yaxis.title.text == "Δ loss (nats)"
    rows = figures.ablation_table(results[0])
    assert len(rows) == 5 and rows[0]["rank"] == 1
    assert rows[0]["p before"] == round(float(results[0].top_probs_before[0, 0]), 4)


@pytest.mark.parametrize("metric", ["target_rank", "entropy", "kl"])
def test_logit_lens_heatmap_is_the_probe(shipped, shipped_results, metric):
    lens, prompt = shipped_results["full"]["lens"], shipped_results["full"]["prompt"]
    fig = figures.logit_lens_heatmap(
        lens, metric, "full", tokens=prompt.tokens, tokenizer=shipped["full"].tokenizer
    )
    field = {"target_rank": "target_rank", "entropy": "entropy", "kl": "kl_to_final"}[metric]
    expected = getattr(lens, field)[0].T.astype(np.float64)
    if metric == "target_rank":
        expected[expected < 0] = np.nan
    np.testing.assert_array_equal(np.asarray(fig.data[0].z, dtype=np.float64), expected)
    assert fig.data[0].x[2] == "2: ␣" and fig.layout.yaxis.title.text == "site"
    table = figures.logit_lens_table(lens, -1, shipped["full"].tokenizer)
    assert len(table) == 17 and table[-1]["site"] == "L17 (readout)"
    assert table[-1]["KL to final"] == pytest.approx(0.0, abs=1e-5)


def test_training_dynamics(shipped):
    logs = {
        r: figures.read_train_log(SAMPLES / f"shakespeare-{r}" / "train_log.csv")
        for r in ("prenorm", "block")
    }
    assert isinstance(logs["block"][0]["step"], int) and logs["block"][1]["val_loss"] is None
    fig = figures.loss_curves(logs)
    assert len(fig.data) == 4 and fig.layout.xaxis.title.text == "step"
    snaps = sorted((SAMPLES / "shakespeare-block" / "snapshots").iterdir())[:2]
    series = probes.over_snapshots(snaps, probes.depth_weights, "To be")
    heat = figures.snapshot_depth_heatmaps(series, ["block"])
    assert all(f"step {int(s)}" in heat.layout.title.text for s in series.steps)
    assert len(heat.data) == 2 and heat.layout.coloraxis.cmin == 0.0
    norms = probes.over_snapshots(snaps, probes.stream_norms, "To be")
    chart = figures.snapshot_norms_chart(norms, "block")
    assert [t.name for t in chart.data] == [f"step {int(s)}" for s in norms.steps]


def test_logit_lens_heatmap_of_a_first_reading_leaves_the_others_blank(shipped):
    model = shipped["full"]
    text = "To be, or not to be"
    lens = probes.logit_lens(model, text, sources=False, positions=[0, -1])
    fig = figures.logit_lens_heatmap(lens, "entropy", "full", tokenizer=model.tokenizer)
    z, hover = np.asarray(fig.data[0].z, dtype=np.float64), np.asarray(fig.data[0].customdata)
    assert np.isfinite(z[:, [0, -1]]).all() and np.isnan(z[:, 1:-1]).all()
    assert (hover[:, 1:-1] == "").all()
    top1 = [model.tokenizer.decode([int(i)]) for i in lens.top_ids[0, 0, :, 0]]
    assert [figures.style.safe_label(t) for t in top1] == hover[:, 0].tolist()
